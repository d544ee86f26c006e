# frozen_string_literal: true

# fedictl test stand-in, not Mastodon. Loads what every process of the stand-in needs, like a
# Rails app's config/environment.rb: bundler, .env.<RAILS_ENV> and the boot checks.
require_relative 'boot'

require 'json'
require 'pg'
require 'redis-client'

require_relative '../lib/mastodon/version'
require_relative '../lib/standin/config'
require_relative '../lib/standin/db'

StandIn::Config.boot!
