# Files under $ACCEL_ROOT through Rack::Files behind Rack::Sendfile in
# X-Accel-Redirect mode, as a Rails app with
# config.action_dispatch.x_sendfile_header = "X-Accel-Redirect": the mapping
# comes from thrust's X-Accel-Mapping, and Rack percent-encodes the URI it
# names. /named?uri=... names a URI as given (an app bug, or a crafted
# parameter), for the refusals.
require "action_dispatch"

files = Rack::Files.new(ENV.fetch("ACCEL_ROOT"))
use Rack::Sendfile, "X-Accel-Redirect"
run(lambda do |env|
  if env["PATH_INFO"] == "/named"
    uri = Rack::Utils.parse_query(env["QUERY_STRING"])["uri"]
    [200, { "content-type" => "text/plain", "x-accel-redirect" => uri }, []]
  else
    files.call(env)
  end
end)
