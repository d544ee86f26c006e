# frozen_string_literal: true

require 'zlib'

module StandIn
  # Base class of the stand-in's migrations (db/migrate, db/post_migrate): plain SQL in #up.
  class Migration
    class << self
      # Like Rails: the migration runs outside a transaction (needed by CREATE INDEX CONCURRENTLY).
      def disable_ddl_transaction!
        @disable_ddl_transaction = true
      end

      def ddl_transaction?
        !@disable_ddl_transaction
      end
    end

    def initialize(connection)
      @connection = connection
    end

    def execute(sql)
      @connection.exec(sql)
    end
  end

  # Applies migrations and records them in schema_migrations(version), as ActiveRecord does.
  class Migrator
    class ConcurrentMigrationError < StandardError; end

    # ActiveRecord::Migrator::MIGRATOR_SALT: the advisory lock id is salt * crc32(database name).
    MIGRATOR_SALT = 2_053_462_845
    FILE_PATTERN = /\A(\d{14})_([a-z0-9_]+)\.rb\z/

    Entry = Struct.new(:version, :name, :path, :post_deployment) do
      def class_name
        name.split('_').map(&:capitalize).join
      end

      def title
        name.tr('_', ' ').capitalize
      end
    end

    attr_reader :connection

    def initialize(connection, out: $stdout)
      @connection = connection
      @out = out
    end

    # Upstream's config/initializers/0_post_deployment_migrations.rb adds db/post_migrate unless
    # SKIP_POST_DEPLOYMENT_MIGRATIONS is set (any value, even an empty one, as in Ruby).
    def self.include_post_deployment?
      !ENV.key?('SKIP_POST_DEPLOYMENT_MIGRATIONS')
    end

    def entries(include_post: self.class.include_post_deployment?)
      dirs = [['db/migrate', false]]
      dirs << ['db/post_migrate', true] if include_post
      found = dirs.flat_map do |dir, post|
        Dir.children(File.join(ROOT, dir)).sort.filter_map do |file|
          match = FILE_PATTERN.match(file)
          match && Entry.new(match[1], match[2], File.join(ROOT, dir, file), post)
        end
      rescue Errno::ENOENT
        []
      end
      found.sort_by(&:version)
    end

    def schema_exists?
      DB.value(connection, "SELECT to_regclass('schema_migrations') IS NOT NULL") == 't'
    end

    def applied_versions
      return [] unless schema_exists?

      connection.exec('SELECT version FROM schema_migrations ORDER BY version').column_values(0)
    end

    def current_version
      applied_versions.max.to_i
    end

    def pending(include_post: self.class.include_post_deployment?)
      applied = applied_versions
      entries(include_post: include_post).reject { |entry| applied.include?(entry.version) }
    end

    def server_version_num
      DB.value(connection, 'SHOW server_version_num').to_i
    end

    # Runs the given migrations (default: all pending) under ActiveRecord's advisory lock.
    def migrate(list = pending, verbose: true)
      with_advisory_lock do
        ensure_internal_tables!
        list.each { |entry| run(entry, verbose: verbose) }
      end
      list
    end

    private

    def run(entry, verbose:)
      announce(entry, 'migrating') if verbose
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      migration = load_migration(entry).new(connection)
      if migration.class.ddl_transaction?
        connection.transaction do
          migration.up
          record(entry)
        end
      else
        migration.up
        record(entry)
      end
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      announce(entry, format('migrated (%.4fs)', elapsed)) if verbose
      @out.puts if verbose
    end

    def record(entry)
      connection.exec_params('INSERT INTO schema_migrations (version) VALUES ($1)', [entry.version])
    end

    def load_migration(entry)
      load entry.path
      Object.const_get(entry.class_name)
    end

    def announce(entry, what)
      text = "== #{entry.version} #{entry.class_name}: #{what} "
      @out.puts text.ljust(79, '=')
    end

    def ensure_internal_tables!
      connection.exec(<<~SQL)
        CREATE TABLE IF NOT EXISTS schema_migrations (version character varying PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS ar_internal_metadata (
          key character varying PRIMARY KEY, value character varying,
          created_at timestamp(6) without time zone NOT NULL,
          updated_at timestamp(6) without time zone NOT NULL);
      SQL
      connection.exec_params(<<~SQL, [Config.rails_env])
        INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
        VALUES ('environment', $1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
        ON CONFLICT (key) DO NOTHING
      SQL
    end

    def with_advisory_lock
      database = DB.value(connection, 'SELECT current_database()')
      lock_id = MIGRATOR_SALT * Zlib.crc32(database)
      unless DB.value(connection, 'SELECT pg_try_advisory_lock($1)', [lock_id]) == 't'
        raise ConcurrentMigrationError,
              'Cannot run migrations because another migration process is currently running.'
      end

      begin
        yield
      ensure
        connection.exec_params('SELECT pg_advisory_unlock($1)', [lock_id])
      end
    end
  end
end
