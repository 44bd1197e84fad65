# A Rack app for the restart tests, run by Puma with the demo's puma.rb:
#   /pid        which copy of the app answered (its process id)
#   /slow?s=N   answers after N seconds, as a slow page or upload does;
#               with &started=PATH it first creates the file PATH, so a test
#               knows the request has reached this copy
#   /crash      the process dies with status 3, as an app does on a fatal error
# When the file named by APP_FAIL_BOOT_IF exists, the app fails at boot,
# as a deploy with a broken initializer does.
flag = ENV["APP_FAIL_BOOT_IF"]
abort "boot failed: #{flag} exists" if flag && File.exist?(flag)

run lambda { |env|
  case env["PATH_INFO"]
  when "/crash"
    exit!(3)
  when "/slow"
    started = env["QUERY_STRING"][/started=([^&]+)/, 1]
    File.write(started, Process.pid.to_s) if started
    sleep Float(env["QUERY_STRING"][/s=([\d.]+)/, 1] || "1")
  end
  [200, { "content-type" => "text/plain", "cache-control" => "no-store" }, [Process.pid.to_s]]
}
