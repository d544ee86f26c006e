# frozen_string_literal: true

require 'dotenv'

# fedictl test stand-in, not Mastodon: the configuration contract of a Mastodon 4.5.x release.
module StandIn
  ROOT = File.expand_path('../..', __dir__)

  # Reads the environment the way Mastodon does: dotenv files first (real variables win), then the
  # same aborts as Mastodon's initializers.
  module Config
    AR_KEYS = %w(
      ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY
      ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT
      ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY
    ).freeze

    module_function

    def rails_env
      ENV.fetch('RAILS_ENV') { ENV.fetch('RACK_ENV', 'development') }
    end

    def production?
      rails_env == 'production'
    end

    # dotenv-rails order: the first file that sets a key wins, and it never overrides the process
    # environment. RAILS_ENV, PORT and BIND are read before this, so they cannot come from the file.
    def load_env!
      names = [".env.#{rails_env}.local", (rails_env == 'test' ? nil : '.env.local'), ".env.#{rails_env}", '.env']
      Dotenv.load(*names.compact.map { |name| File.join(ROOT, name) })
    end

    def boot!
      load_env!
      check_redis_namespace!
      check_secrets!
    end

    def check_redis_namespace!
      return unless ENV['REDIS_NAMESPACE']

      warn <<~MESSAGE
        ERROR: the REDIS_NAMESPACE environment variable is no longer supported, and a migration is required.

        Please see documentation at https://github.com/mastodon/redis_namespace_migration
      MESSAGE
      abort
    end

    def check_secrets!
      return unless production?
      # Like upstream's image build: SECRET_KEY_BASE_DUMMY fills every secret with a placeholder.
      return if ENV['SECRET_KEY_BASE_DUMMY']

      if ENV.fetch('SECRET_KEY_BASE', '').strip.empty?
        abort "Missing `secret_key_base` for 'production' environment, set this string with " \
              '`bin/rails credentials:edit` (ArgumentError)'
      end

      AR_KEYS.each do |key|
        if ENV.fetch(key, '').empty?
          abort <<~MESSAGE

            Mastodon now requires that these variables are set:

              - ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY
              - ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT
              - ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY

            Run `bin/rails db:encryption:init` to generate new secrets and then assign the environment variables.
            Do not change the secrets once they are set, as doing so may cause data loss and other issues that will be difficult or impossible to recover from.
          MESSAGE
        end

        next unless ENV.fetch(key, '').end_with?('DO_NOT_USE_IN_PRODUCTION')

        abort <<~MESSAGE
          It looks like you are trying to run Mastodon in production with a #{key} value from the test environment

          Please generate fresh secrets using `bin/rails db:encryption:init` and use them instead.
        MESSAGE
      end
    end

    def local_domain
      ENV.fetch('LOCAL_DOMAIN') { 'localhost' }
    end

    def web_domain
      value = ENV.fetch('WEB_DOMAIN', '')
      value.empty? ? local_domain : value
    end

    def alternate_domains
      ENV.fetch('ALTERNATE_DOMAINS', '').split(/\s*,\s*/).reject(&:empty?)
    end

    # Hosts Rails' host authorization accepts in production.
    def allowed_hosts
      [local_domain, web_domain, *alternate_domains].map(&:downcase).uniq
    end

    # config/database.yml: DATABASE_URL wins over the DB_* variables; a DB_HOST starting with /
    # is a Unix socket directory (libpq decides that).
    def db_params(application_name)
      url = ENV.fetch('DATABASE_URL', '')
      return { dbname: url, application_name: application_name } unless url.empty?

      password = ENV.fetch('DB_PASS', '')
      {
        host: ENV.fetch('DB_HOST', 'localhost'),
        port: ENV.fetch('DB_PORT', '5432'),
        dbname: ENV.fetch('DB_NAME') { "mastodon_#{rails_env}" },
        user: ENV.fetch('DB_USER') { production? ? 'mastodon' : ENV.fetch('USER', 'mastodon') },
        password: password.empty? ? nil : password,
        sslmode: ENV.fetch('DB_SSLMODE', 'prefer'),
        connect_timeout: 5,
        application_name: application_name,
      }.compact
    end

    # lib/mastodon/redis_configuration.rb: PREFIX_REDIS_* (SIDEKIQ_, CACHE_) falls back to REDIS_*;
    # a URL wins over host/port/password/db.
    def redis_params(prefix = '')
      fetch = lambda do |name|
        [ENV.fetch("#{prefix}REDIS_#{name}", ''), ENV.fetch("REDIS_#{name}", '')].find { |v| !v.empty? }
      end
      url = fetch.call('URL')
      return { url: url } if url

      {
        host: fetch.call('HOST') || 'localhost',
        port: (fetch.call('PORT') || '6379').to_i,
        username: fetch.call('USER'),
        password: fetch.call('PASSWORD'),
        db: (fetch.call('DB') || '0').to_i,
        connect_timeout: 5,
      }.compact
    end

    def redis(prefix = '')
      RedisClient.config(**redis_params(prefix)).new_client
    end

    # PAPERCLIP_ROOT_PATH, default public/system (a link to shared storage in a deployment).
    def paperclip_root
      ENV.fetch('PAPERCLIP_ROOT_PATH', File.join(':rails_root', 'public', 'system')).gsub(':rails_root', ROOT)
    end
  end
end
