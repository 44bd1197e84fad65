# A page built the way a Rails app builds one, marked public so a shared
# cache may keep it: its absolute URLs come from the request's host, scheme
# and port (ActionDispatch::Request, which reads X-Forwarded-Host, -Proto,
# -Port, -Scheme and -Ssl as Rack does), and it shows the Forwarded header
# that Rack 3 reads before them. tests/hostile.rs sends one poisoned request
# for each of them, then clean ones.
require "json"
require "action_dispatch"

run(lambda do |env|
  request = ActionDispatch::Request.new(env)
  page = {
    url: request.url,
    base_url: request.base_url,
    ssl: request.ssl?,
    forwarded: env["HTTP_FORWARDED"],
    prefix: env["HTTP_X_FORWARDED_PREFIX"],
    request_start: env["HTTP_X_REQUEST_START"],
    client_ip: env["HTTP_CLIENT_IP"],
    real_ip: env["HTTP_X_REAL_IP"],
  }
  [200, { "content-type" => "application/json", "cache-control" => "public, max-age=60" }, [JSON.generate(page)]]
end)
