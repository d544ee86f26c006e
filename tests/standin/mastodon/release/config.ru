# frozen_string_literal: true

# fedictl test stand-in for a Mastodon release's web process, not Mastodon. Served by real puma
# (bundle exec puma -C config/puma.rb).
require_relative 'config/environment'
require_relative 'lib/standin/web'

$stdout.puts "[stand-in web] Mastodon #{Mastodon::Version} stand-in booted from #{StandIn::ROOT}"
run StandIn::Web.new
