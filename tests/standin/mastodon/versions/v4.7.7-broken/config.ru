# frozen_string_literal: true

# fedictl test stand-in v4.7.7-broken, not Mastodon: its web process never boots, on purpose,
# so that tests can prove a failed upgrade is detected and rolled back. Migrations and tootctl work.
require_relative 'config/environment'

raise 'stand-in v4.7.7 is broken on purpose'
