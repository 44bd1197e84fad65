# A Rails-shaped app for THRUST_PUBLIC_DIR: "/" is a page that loads the
# fingerprinted assets under PUBLIC_ROOT/assets, "/run?src=NAME" one that
# runs the script assets/NAME; public files are served by
# ActionDispatch::Static behind Rack::Sendfile, as Rails does with
# public_file_server on; /stats counts, by path, the requests that reached
# the app.
require "json"
require "action_dispatch"
require "action_controller"
ActionController::Base.default_static_extension

ROOT = ENV.fetch("PUBLIC_ROOT")
COUNTS = Hash.new(0)
LOCK = Mutex.new

page = lambda do |env|
  case env["PATH_INFO"]
  when "/stats"
    [200, { "content-type" => "application/json", "cache-control" => "no-store" }, [LOCK.synchronize { JSON.generate(COUNTS) }]]
  when "/run"
    # A page that runs one script under assets/ (its name in the query).
    name = Rack::Utils.parse_query(env["QUERY_STRING"])["src"].to_s
    html = "<!doctype html><html><body><p id=\"out\">no script</p><script src=\"/assets/#{Rack::Utils.escape_path(name)}\"></script></body></html>"
    [200, { "content-type" => "text/html; charset=utf-8", "cache-control" => "no-store" }, [html]]
  when "/"
    assets = Dir.children(File.join(ROOT, "assets")).sort.reject { |name| name.end_with?(".br", ".gz") }
    links = assets.map { |name| "<link rel=\"preload\" href=\"/assets/#{name}\">" }.join("\n")
    [200, { "content-type" => "text/html; charset=utf-8", "cache-control" => "no-store" }, ["<!doctype html>\n#{links}\n<p>page</p>\n"]]
  else
    [404, { "content-type" => "text/plain" }, ["not found in the app\n"]]
  end
end

# Counts every request that reaches the app (thrust answered the rest).
class RequestCounter
  def initialize(app)
    @app = app
  end

  def call(env)
    LOCK.synchronize { COUNTS[env["PATH_INFO"]] += 1 } unless env["PATH_INFO"] == "/stats"
    @app.call(env)
  end
end

use Rack::Sendfile, "X-Sendfile"
use RequestCounter
use ActionDispatch::Static, ROOT, headers: { "cache-control" => "public, max-age=31536000" }
run page
