require_relative "boot"
require "rails"
require "action_controller/railtie"

module TestApp
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load = true
    config.logger = ActiveSupport::Logger.new($stdout)
    config.secret_key_base = ENV.fetch("SECRET_KEY_BASE", "packaging-check-only")
    # What a production app behind thrust sets: thrust sends the files.
    config.public_file_server.enabled = true
    config.public_file_server.headers = { "cache-control" => "public, max-age=31536000" }
    config.action_dispatch.x_sendfile_header = "X-Sendfile"
  end
end
