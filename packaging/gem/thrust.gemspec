# The thrust gem, built by packaging/gem/build in two forms from this one
# spec: a platform gem carrying the prebuilt binary (THRUST_GEM_PLATFORM set,
# e.g. x86_64-linux) and a source gem that builds it with cargo when it is
# installed (THRUST_GEM_PLATFORM unset).
version = File.read(File.join(__dir__, "VERSION")).strip
platform = ENV["THRUST_GEM_PLATFORM"]

Gem::Specification.new do |spec|
  spec.name = "thrust"
  spec.version = version
  spec.summary = "A small, fast front server for your app's container, driven by Thruster's variables"
  spec.description = <<~TEXT
    thrust starts your app server as its child, proxies to it, serves and
    caches assets, compresses, terminates TLS with automatic certificates,
    speaks HTTP/2 and answers the health check itself. It reads Thruster's
    environment variables: `bundle exec thrust bin/rails server`.
  TEXT
  spec.authors = ["thrust developers"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 2.7"
  spec.bindir = "exe"
  spec.executables = ["thrust"]
  spec.files = Dir.chdir(__dir__) { Dir["exe/*", "README.md", "native/*", "ext/**/*", "rust/**/*"] }
  if platform
    spec.platform = Gem::Platform.new(platform)
  else
    spec.extensions = ["ext/thrust/extconf.rb"]
  end
end
