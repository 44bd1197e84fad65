# Builds thrust from the Rust source this gem carries, when the gem is
# installed on a platform without a prebuilt gem. Needs cargo (rustup.rs);
# honours CARGO, CARGO_TARGET_DIR and CARGO_NET_OFFLINE. RubyGems runs make
# afterwards, so an empty Makefile is left for it.
require "fileutils"
require "rbconfig"

gem_root = File.expand_path("../..", __dir__)
source = File.join(gem_root, "rust")
cargo = [ENV["CARGO"], *ENV["PATH"].to_s.split(File::PATH_SEPARATOR).map { |dir| File.join(dir, "cargo") }]
  .compact
  .find { |path| File.file?(path) && File.executable?(path) }
unless cargo
  abort <<~TEXT
    thrust: no prebuilt thrust for #{RbConfig::CONFIG["host"]}, and building it from source needs cargo,
    Rust's build tool, which is not on PATH. Install Rust (https://rustup.rs, or your system's cargo
    package, Rust 1.85 or newer), then install the gem again.
  TEXT
end

target = ENV["CARGO_TARGET_DIR"] || File.join(source, "target")
command = [cargo, "build", "--release", "--locked", "--manifest-path", File.join(source, "Cargo.toml")]
puts "thrust: building with #{command.join(" ")} (a few minutes)"
# RubyGems sets SOURCE_DATE_EPOCH to the time of the install; the C libraries'
# build scripts (aws-lc, zstd, jemalloc) watch it, so with it cargo would build
# them again even in a target dir where they are built (CARGO_TARGET_DIR).
# thrust's binary embeds no build date.
env = { "CARGO_TARGET_DIR" => target, "SOURCE_DATE_EPOCH" => nil }
system(env, *command) or abort "thrust: cargo build failed (see above)"

native = File.join(gem_root, "native")
FileUtils.mkdir_p(native)
FileUtils.install(File.join(target, "release", "thrust"), native, mode: 0o755)
File.write("Makefile", "all:\n\ninstall:\n\nclean:\n")
