# As in a Rails app's config/puma.rb: listen on the port thrust gives the app.
port ENV.fetch("PORT", 3000)
threads 1, 5
workers 0
# After a graceful stop on SIGTERM, exit 0 rather than re-raising the signal
# (which would make the container's exit status 143).
raise_exception_on_sigterm false
# On SIGTERM, answer the connections already waiting in the listen queue
# instead of closing them: without it, requests in flight when a deploy
# stops this copy get 502 (reliability/drain.py, docs/reliability.md).
drain_on_shutdown true
