# frozen_string_literal: true

# fedictl test stand-in, not Mastodon. Same job as Mastodon's config/boot.rb: set up bundler.
ENV['BUNDLE_GEMFILE'] ||= File.expand_path('../Gemfile', __dir__)

require 'bundler/setup'
