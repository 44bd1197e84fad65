# A tiny Rack app that behaves like a Rails app in production does, so the
# demo (and thrust's end-to-end tests) meet the problems thrust solves:
# - /up redirects to https, as `config.force_ssl = true` does when it does not
#   see `X-Forwarded-Proto: https`;
# - unknown hosts are refused, as Rails' host authorization does;
# - files under public/ are served by ActionDispatch::Static, as Rails does
#   with `public_file_server` on: fingerprinted assets with a year's
#   Cache-Control, and a precompressed .br or .gz copy picked by the client's
#   Accept-Encoding. Rack::Sendfile hands every such file to thrust.
require "json"
require "action_dispatch"
require "action_controller"
# ActionDispatch::Static asks ActionController::Base for the page extension
# it tries; loading it now keeps that out of the first request.
ActionController::Base.default_static_extension

ALLOWED_HOSTS = (ENV["DEMO_ALLOWED_HOSTS"] || "localhost,127.0.0.1").split(",")
ROOT = File.expand_path("public", __dir__)
INDEX = File.expand_path("index.html", __dir__)

# Counts the requests that reach the app, by path; /stats shows them, so the
# demo can show which requests thrust answered without the app.
class RequestCounter
  def initialize(app)
    @app = app
    @counts = Hash.new(0)
    @lock = Mutex.new
  end

  def call(env)
    if env["PATH_INFO"] == "/stats"
      counts = @lock.synchronize { @counts.dup }
      return [200, { "content-type" => "application/json", "cache-control" => "no-store" }, [JSON.generate(counts)]]
    end
    @lock.synchronize { @counts[env["PATH_INFO"]] += 1 }
    @app.call(env)
  end
end

class Events
  def initialize(count)
    @count = count
  end

  def each
    @count.times do |i|
      yield "data: event #{i} at #{Time.now.strftime('%H:%M:%S.%L')}\n\n"
      sleep 0.5
    end
  end
end

# Files under /files/ are sent by thrust: Rack::Sendfile turns Rack::Files'
# bodies into an X-Sendfile header, as Rails does with
# config.action_dispatch.x_sendfile_header = "X-Sendfile".
FILES = Rack::Files.new(ROOT)

app = lambda do |env|
  host = env["HTTP_HOST"].to_s.sub(/:\d+\z/, "")
  unless ALLOWED_HOSTS.include?(host)
    next [403, { "content-type" => "text/plain" }, ["Blocked host: #{host}\n"]]
  end

  case env["PATH_INFO"]
  when %r{\A/files(/.*)\z}
    FILES.call(env.merge("PATH_INFO" => Regexp.last_match(1)))
  when "/up"
    # What force_ssl does to a plain-HTTP health check.
    [301, { "location" => "https://#{host}/up", "content-type" => "text/plain" }, []]
  when "/events"
    [200, { "content-type" => "text/event-stream", "cache-control" => "no-cache" }, Events.new(5)]
  when "/headers"
    seen = env.select { |k, _| k.start_with?("HTTP_") }.transform_keys { |k| k.sub("HTTP_", "").downcase.tr("_", "-") }
    [200, { "content-type" => "application/json" }, [JSON.generate(seen)]]
  else
    html = File.read(INDEX)
    [200, { "content-type" => "text/html; charset=utf-8" }, [html]]
  end
end

# As in a Rails app, Rack::Sendfile wraps ActionDispatch::Static.
use Rack::Sendfile, "X-Sendfile"
use RequestCounter
use ActionDispatch::Static, ROOT, headers: { "cache-control" => "public, max-age=31536000" }
run app
