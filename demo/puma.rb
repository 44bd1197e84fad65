# As in a Rails app's config/puma.rb: listen on the port thrust gives the app.
port ENV.fetch("PORT", 3000)
threads 1, 5
workers 0
# After a graceful stop on SIGTERM, exit 0 rather than re-raising the signal
# (which would make the container's exit status 143).
raise_exception_on_sigterm false
