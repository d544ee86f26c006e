# frozen_string_literal: true

# fedictl test stand-in, not Mastodon: the same settings as Mastodon 4.5's config/puma.rb.
persistent_timeout ENV.fetch('PERSISTENT_TIMEOUT') { 20 }.to_i

max_threads_count = ENV.fetch('MAX_THREADS') { 5 }.to_i
min_threads_count = ENV.fetch('MIN_THREADS') { max_threads_count }.to_i
threads min_threads_count, max_threads_count

if ENV['SOCKET']
  bind "unix://#{ENV['SOCKET']}"
else
  bind "tcp://#{ENV.fetch('BIND', '127.0.0.1')}:#{ENV.fetch('PORT', 3000)}"
end

environment ENV.fetch('RAILS_ENV') { 'development' }
workers     ENV.fetch('WEB_CONCURRENCY') { 2 }.to_i

# With preload_app!, puma cannot do a phased restart: SIGUSR1 falls back to a hot restart (the
# master re-execs itself in its restart directory and keeps the listening socket).
preload_app!

plugin :tmp_restart

# Stand-in only (upstream keeps puma's default of 30 s): with Debian 13's Ruby 3.3 and puma 6.6, a
# worker sometimes hangs closing its wake-up pipe while it stops for a hot restart (seen about once
# in 20-40 restarts in the lab); the master then kills it after this timeout and the restart
# completes. Requests meanwhile wait in the listen queue (none is refused); keep that wait short.
worker_shutdown_timeout 5

set_remote_address(proxy_protocol: :v1) if ENV['PROXY_PROTO_V1'] == 'true'
