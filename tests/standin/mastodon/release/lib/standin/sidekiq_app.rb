# frozen_string_literal: true

# fedictl test stand-in, not Mastodon: what `bundle exec sidekiq` boots (see config/sidekiq.yml).
# The real Sidekiq runs one stand-in job: a heartbeat that reads PostgreSQL and writes Redis, queued
# every HEARTBEAT_SECONDS by a thread of the same process, so a running heartbeat proves that the
# process reaches both with the configured credentials and processes its queues.
require_relative '../../config/environment'
require 'fileutils'
require 'sidekiq'
require 'time'

module StandIn
  class HeartbeatJob
    include Sidekiq::Job
    sidekiq_options queue: 'scheduler', retry: false

    KEY = 'standin:sidekiq:heartbeat'

    def perform
      accounts = DB.with('mastodon-standin: sidekiq') do |connection|
        DB.value(connection, 'SELECT count(*) FROM accounts').to_i
      end
      beat = { at: Time.now.utc.iso8601, pid: Process.pid, version: Mastodon::Version.to_s, accounts: accounts }
      Sidekiq.redis { |redis| redis.call('SET', KEY, JSON.generate(beat), 'EX', 120) }
    end
  end

  module SidekiqApp
    HEARTBEAT_SECONDS = Integer(ENV.fetch('STANDIN_HEARTBEAT_SECONDS', '5'))

    module_function

    def configure
      Sidekiq.configure_server do |config|
        config.redis = Config.redis_params('SIDEKIQ_')
        config.on(:startup) { startup }
        config.on(:quiet) { @ticker&.kill }
        config.on(:shutdown) { @ticker&.kill }
      end
      Sidekiq.configure_client { |config| config.redis = Config.redis_params('SIDEKIQ_') }
    end

    def startup
      # Like Mastodon's image: touch tmp/<MASTODON_SIDEKIQ_READY_FILENAME> once ready.
      ready = ENV.fetch('MASTODON_SIDEKIQ_READY_FILENAME', '')
      FileUtils.touch(File.join(ROOT, 'tmp', ready)) unless ready.empty?
      @ticker = Thread.new do
        loop do
          HeartbeatJob.perform_async
          sleep HEARTBEAT_SECONDS
        end
      end
    end
  end
end

StandIn::SidekiqApp.configure
