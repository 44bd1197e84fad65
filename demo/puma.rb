# As in a Rails app's config/puma.rb: listen on the port thrust gives the app.
port ENV.fetch("PORT", 3000)
threads 1, 5
workers 0
