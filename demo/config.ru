# A tiny Rack app that behaves like a Rails app in production does, so the
# demo (and thrust's end-to-end tests) meet the problems thrust solves:
# - /up redirects to https, as `config.force_ssl = true` does when it does not
#   see `X-Forwarded-Proto: https`;
# - unknown hosts are refused, as Rails' host authorization does.
require "json"

ALLOWED_HOSTS = (ENV["DEMO_ALLOWED_HOSTS"] || "localhost,127.0.0.1").split(",")
ROOT = File.expand_path("public", __dir__)

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
  when "/assets/app.js"
    body = File.read(File.join(ROOT, "assets/app.js"))
    [200, { "content-type" => "text/javascript", "cache-control" => "public, max-age=31536000, immutable",
            "content-length" => body.bytesize.to_s }, [body]]
  when "/events"
    [200, { "content-type" => "text/event-stream", "cache-control" => "no-cache" }, Events.new(5)]
  when "/headers"
    seen = env.select { |k, _| k.start_with?("HTTP_") }.transform_keys { |k| k.sub("HTTP_", "").downcase.tr("_", "-") }
    [200, { "content-type" => "application/json" }, [JSON.generate(seen)]]
  else
    html = File.read(File.join(ROOT, "index.html"))
    [200, { "content-type" => "text/html; charset=utf-8" }, [html]]
  end
end

use Rack::Sendfile, "X-Sendfile"
run app
