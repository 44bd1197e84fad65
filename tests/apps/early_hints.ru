# Sends 103 Early Hints as Rails' `send_early_hints` does (Puma started with
# --early-hints gives the app `rack.early_hints`), then "renders" until the
# test lets it answer: /page?NAME waits (at most 10 s) for the file NAME in
# RELEASE_DIR (and creates NAME.arrived there first), so a client can read
# the hints while the answer is not yet written. /no-hints answers at once,
# without any.
RELEASE_DIR = ENV.fetch("RELEASE_DIR")

STYLE_AND_SCRIPT = {
  "link" => "</assets/application-4f1e2a9b.css>; rel=preload; as=style\n" \
            "</assets/application-9c0d7e3a.js>; rel=preload; as=script"
}
IMAGE = { "link" => "</assets/logo-1b2c3d4e.svg>; rel=preload; as=image" }

def released(name)
  path = File.join(RELEASE_DIR, File.basename(name))
  # Tells the test the request is here.
  File.write("#{path}.arrived", "")
  100.times do
    return if File.exist?(path)
    sleep 0.1
  end
end

run lambda { |env|
  case env["PATH_INFO"]
  when "/page"
    if (send_hints = env["rack.early_hints"])
      send_hints.call(STYLE_AND_SCRIPT)
      send_hints.call(IMAGE)
    end
    released(env["QUERY_STRING"])
    [200, { "content-type" => "text/html", "cache-control" => "no-store" }, ["<!doctype html><p>rendered</p>\n"]]
  when "/no-hints"
    [200, { "content-type" => "text/plain" }, ["plain\n"]]
  else
    [404, { "content-type" => "text/plain" }, ["not found\n"]]
  end
}
