# The demo's Puma settings without drain_on_shutdown, as a Rails app's
# generated config/puma.rb has it: on SIGTERM, Puma closes the connections
# still waiting in its listen queue. reliability/drain.py --puma-config
# ../reliability/puma-defaults.rb measures what that costs.
port ENV.fetch("PORT", 3000)
threads 1, 5
workers 0
raise_exception_on_sigterm false
