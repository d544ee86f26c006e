# frozen_string_literal: true

require_relative '../../config/environment'
require_relative 'migrator'
require_relative 'assets'

module StandIn
  # The bin/rails tasks a deployment runs, with upstream's behaviour and exit codes.
  module RailsTasks
    TASKS = {
      'db:prepare' => :db_prepare,
      'db:migrate' => :db_migrate,
      'db:migrate:status' => :db_migrate_status,
      'db:version' => :db_version,
      'db:abort_if_pending_migrations' => :db_abort_if_pending_migrations,
      'assets:precompile' => :assets_precompile,
      'runner' => :runner,
    }.freeze

    # lib/tasks/db.rake (db:pre_migration_check): the oldest schema a zero-downtime upgrade accepts.
    ZERO_DOWNTIME_MINIMUM = 2023_09_07_150100

    class Aborted < StandardError; end

    module_function

    def run(argv)
      task = argv.first
      if task.nil? || %w(-h --help help).include?(task)
        puts "Stand-in bin/rails (fedictl tests, not Mastodon). Tasks: #{TASKS.keys.join(', ')}"
        return 0
      end
      method = TASKS[task]
      unless method
        warn %(Unrecognized command "#{task}" (Rails::Command::UnrecognizedCommandError))
        return 1
      end

      send(method, *argv.drop(1))
      0
    rescue Aborted => e
      warn e.message
      1
    rescue PG::ConnectionBad => e
      warn "bin/rails aborted!\nActiveRecord::ConnectionNotEstablished: #{e.message.strip}"
      1
    rescue Migrator::ConcurrentMigrationError => e
      warn "bin/rails aborted!\nActiveRecord::ConcurrentMigrationError: #{e.message}"
      1
    rescue PG::Error => e
      warn "bin/rails aborted!\nStandardError: An error has occurred, this and all later migrations canceled:\n\n" \
           "#{e.class}: #{e.message.strip}"
      1
    end

    # Rails 7.1+: create the database if missing; load the schema when it is empty (the schema
    # equals all migrations, post-deployment ones included; nothing is seeded); else migrate.
    def db_prepare
      connection = connect_or_create_database
      migrator = Migrator.new(connection)
      check_postgresql_version!(migrator)
      if migrator.applied_versions.empty?
        loaded = migrator.migrate(migrator.entries(include_post: true), verbose: false)
        puts "Loaded the schema (#{loaded.size} migrations, up to #{loaded.last&.version || 0})"
      else
        migrator.migrate
      end
    ensure
      connection&.close
    end

    def db_migrate
      DB.with('mastodon-standin: bin/rails db:migrate') do |connection|
        migrator = Migrator.new(connection)
        pre_migration_check!(migrator)
        migrator.migrate
      end
    end

    def db_migrate_status
      DB.with('mastodon-standin: bin/rails db:migrate:status') do |connection|
        migrator = Migrator.new(connection)
        raise Aborted, 'Schema migrations table does not exist yet.' unless migrator.schema_exists?

        applied = migrator.applied_versions
        puts "\ndatabase: #{DB.value(connection, 'SELECT current_database()')}\n\n"
        puts ' Status   Migration ID    Migration Name'
        puts '-' * 50
        migrator.entries.each do |entry|
          status = applied.include?(entry.version) ? 'up' : 'down'
          puts "#{status.center(8)}  #{entry.version.ljust(14)}  #{entry.title}"
        end
        puts
      end
    end

    def db_version
      DB.with('mastodon-standin: bin/rails db:version') do |connection|
        puts "Current version: #{Migrator.new(connection).current_version}"
      end
    end

    def db_abort_if_pending_migrations
      DB.with('mastodon-standin: bin/rails db:abort_if_pending_migrations') do |connection|
        pending = Migrator.new(connection).pending
        next if pending.empty?

        lines = pending.map { |entry| format('  %<version>4s %<name>s', version: entry.version, name: entry.class_name) }
        raise Aborted, "You have #{pending.size} pending migrations:\n#{lines.join("\n")}\n" \
                       'Run `bin/rails db:migrate` to update your database then try again.'
      end
    end

    def assets_precompile
      changed = Assets.write_manifest
      puts(changed ? "Wrote #{Assets::MANIFEST}" : "#{Assets::MANIFEST} is up to date")
    end

    # Evaluates Ruby with the stand-in's tiny models (Account.find_local, Account.count, User.count),
    # enough for upstream's idempotence idiom: bin/rails runner 'exit Account.find_local("alice") ? 0 : 1'.
    def runner(code = nil, *)
      raise Aborted, 'Usage: bin/rails runner CODE' if code.nil?

      require_relative 'models'
      TOPLEVEL_BINDING.eval(code, 'runner')
    end

    def check_postgresql_version!(migrator)
      return if migrator.server_version_num >= 140_000

      raise Aborted, 'This version of Mastodon requires PostgreSQL 14.0 or newer. ' \
                     'Please update PostgreSQL before updating Mastodon.'
    end

    def pre_migration_check!(migrator)
      check_postgresql_version!(migrator)
      return unless ENV['SKIP_POST_DEPLOYMENT_MIGRATIONS'] && migrator.current_version < ZERO_DOWNTIME_MINIMUM

      raise Aborted, <<~MESSAGE
        Zero-downtime migrations from Mastodon versions earlier than 4.2.0 are not supported.
        Please update to Mastodon 4.2.x first or upgrade by stopping all services and running migrations without `SKIP_POST_DEPLOYMENT_MIGRATIONS`.
      MESSAGE
    end

    def connect_or_create_database
      DB.connect('mastodon-standin: bin/rails db:prepare')
    rescue PG::ConnectionBad => e
      raise unless e.message.include?('does not exist') && ENV.fetch('DATABASE_URL', '').empty?

      params = Config.db_params('mastodon-standin: bin/rails db:prepare')
      name = params[:dbname]
      DB.with_params(params.merge(dbname: 'postgres')) do |admin|
        admin.exec("CREATE DATABASE #{admin.quote_ident(name)}")
      end
      puts "Created database '#{name}'"
      DB.connect('mastodon-standin: bin/rails db:prepare')
    end
  end
end
