port ENV.fetch("PORT", 3000)
threads 1, 3
raise_exception_on_sigterm false
