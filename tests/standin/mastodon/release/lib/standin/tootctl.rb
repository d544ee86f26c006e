# frozen_string_literal: true

require 'digest'
require 'fileutils'
require 'optparse'
require 'securerandom'
require_relative '../../config/environment'
require_relative 'access_tokens'
require_relative 'features'

module StandIn
  # The tootctl commands a deployment runs, with upstream's options, messages and exit codes
  # (Thor errors go to stderr with exit 1). `tootctl standin ...` exists only in the stand-in: it
  # makes test data for the cleanup commands.
  class Tootctl
    class Failure < StandardError; end

    ROLES = %w(Owner Admin Moderator).freeze
    USERNAME = /\A[a-z0-9_]+([a-z0-9_.-]+[a-z0-9_]+)?\z/i
    EMAIL = /\A[^@\s]+@[^@\s]+\z/
    REMOTE_DOMAIN = 'remote.invalid'

    COMMANDS = {
      %w(accounts create) => :accounts_create,
      %w(media remove) => :media_remove,
      %w(preview_cards remove) => :preview_cards_remove,
      %w(statuses remove) => :statuses_remove,
      %w(cache clear) => :cache_clear,
      %w(standin seed) => :standin_seed,
      %w(standin post) => :standin_post,
      %w(standin token) => :standin_token,
    }.freeze

    def self.start(argv)
      new.start(argv)
    end

    def start(argv)
      if argv.empty? || %w(-h --help help).include?(argv.first)
        puts "Stand-in tootctl (fedictl tests, not Mastodon). Commands: version, #{COMMANDS.keys.map { |c| c.join(' ') }.join(', ')}"
        return 0
      end
      if %w(version --version -v).include?(argv.first)
        puts Mastodon::Version.to_s
        return 0
      end

      method = COMMANDS[argv.first(2)]
      raise Failure, %(Could not find command "#{argv.first(2).join(' ')}".) unless method

      send(method, argv.drop(2))
      0
    rescue Failure, OptionParser::ParseError => e
      warn e.message
      1
    rescue PG::Error, RedisClient::Error => e
      warn "#{e.class}: #{e.message.strip}"
      1
    end

    private

    # Parses Thor-style options: --name VALUE / --name=VALUE / --flag / --no-flag.
    def parse(args, spec, arguments: 0)
      options = spec.transform_values { |kind| kind == :boolean ? false : nil }
      parser = OptionParser.new
      spec.each do |name, kind|
        long = "--#{name.to_s.tr('_', '-')}"
        case kind
        when :boolean then parser.on("#{long.sub('--', '--[no-]')}") { |v| options[name] = v }
        when :numeric then parser.on("#{long} N", Integer) { |v| options[name] = v }
        else parser.on("#{long} VALUE", String) { |v| options[name] = v }
        end
      end
      begin
        rest = parser.parse(args)
      rescue OptionParser::InvalidOption => e
        raise Failure, %(Unknown switches "#{e.args.join(' ')}")
      end
      raise Failure, "ERROR: wrong number of arguments (given #{rest.size}, expected #{arguments})" if rest.size != arguments

      [options, rest]
    end

    def accounts_create(args)
      options, (username,) = parse(args, { email: :string, confirmed: :boolean, role: :string, reattach: :boolean,
                                           force: :boolean, approve: :boolean }, arguments: 1)
      raise Failure, "No value provided for required options '--email'" if options[:email].to_s.empty?
      raise Failure, 'Cannot find user role with that name' if options[:role] && !ROLES.include?(options[:role])

      password = SecureRandom.hex
      DB.with('mastodon-standin: tootctl') do |connection|
        errors = []
        errors << %w(account.username invalid) unless USERNAME.match?(username) && username.length <= 30
        errors << %w(account.username taken) if local_account_id(connection, username)
        errors << %w(email invalid) unless EMAIL.match?(options[:email])
        errors << %w(email taken) if connection.exec_params('SELECT 1 FROM users WHERE lower(email) = lower($1)',
                                                            [options[:email]]).ntuples.positive?
        raise Failure, errors.map { |attr, type| "Failure/Error: #{attr}\n    #{type}\n" }.join unless errors.empty?

        connection.transaction do
          account_id = DB.value(connection, 'INSERT INTO accounts (username) VALUES ($1) RETURNING id', [username])
          salt = SecureRandom.hex(8)
          connection.exec_params(<<~SQL, [account_id, options[:email], "sha256$#{salt}$#{Digest::SHA256.hexdigest(salt + password)}", options[:role], options[:confirmed], options[:approve]])
            INSERT INTO users (account_id, email, encrypted_password, role, confirmed_at, approved)
            VALUES ($1, $2, $3, $4, CASE WHEN $5::boolean THEN now() AT TIME ZONE 'utc' END, $6::boolean)
          SQL
        end
      end
      puts 'OK'
      puts "New password: #{password}"
    end

    def media_remove(args)
      options, = parse(args, { days: :numeric, prune_profiles: :boolean, remove_headers: :boolean,
                               include_follows: :boolean, keep_interacted: :boolean, concurrency: :numeric,
                               verbose: :boolean, dry_run: :boolean })
      days = options[:days] || 7
      processed = 0
      aggregate = 0
      DB.with('mastodon-standin: tootctl') do |connection|
        rows = connection.exec_params(<<~SQL, [days])
          SELECT id, file_file_name, file_file_size FROM media_attachments
          WHERE remote_url <> '' AND file_file_name IS NOT NULL
            AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => $1::int)
        SQL
        rows.each do |row|
          processed += 1
          aggregate += row['file_file_size'].to_i
          next if options[:dry_run]

          remove_cached_file('media_attachments', 'files', row['id'], row['file_file_name'])
          connection.exec_params('UPDATE media_attachments SET file_file_name = NULL, file_file_size = NULL, ' \
                                 "updated_at = now() AT TIME ZONE 'utc' WHERE id = $1", [row['id']])
        end
      end
      puts "Removed #{processed} media attachments (approx. #{human_size(aggregate)})#{dry_run_suffix(options)}"
    end

    def preview_cards_remove(args)
      options, = parse(args, { days: :numeric, concurrency: :numeric, verbose: :boolean, dry_run: :boolean,
                               link: :boolean })
      days = options[:days] || 180
      processed = 0
      aggregate = 0
      DB.with('mastodon-standin: tootctl') do |connection|
        link_only = options[:link] ? 'AND type = 0' : ''
        rows = connection.exec_params(<<~SQL, [days])
          SELECT id, image_file_name, image_file_size FROM preview_cards
          WHERE image_file_name IS NOT NULL #{link_only}
            AND updated_at < (now() AT TIME ZONE 'utc') - make_interval(days => $1::int)
        SQL
        rows.each do |row|
          processed += 1
          aggregate += row['image_file_size'].to_i
          next if options[:dry_run]

          remove_cached_file('preview_cards', 'images', row['id'], row['image_file_name'])
          connection.exec_params('UPDATE preview_cards SET image_file_name = NULL, image_file_size = NULL WHERE id = $1',
                                 [row['id']])
        end
      end
      link = options[:link] ? 'link-type ' : ''
      puts "Removed #{processed} #{link}preview cards (approx. #{human_size(aggregate)})#{dry_run_suffix(options)}"
    end

    def statuses_remove(args)
      options, = parse(args, { days: :numeric, batch_size: :numeric, continue: :boolean, clean_followed: :boolean,
                               skip_status_remove: :boolean, skip_media_remove: :boolean,
                               compress_database: :boolean })
      days = options[:days] || 90
      raise Failure, 'Cannot run with this batch_size setting, must be at least 1' if (options[:batch_size] || 1) < 1

      DB.with('mastodon-standin: tootctl') do |connection|
        unless options[:skip_status_remove]
          started = now
          puts 'Extract the deletion target from statuses... This might take a while...'
          targets = connection.exec_params(<<~SQL, [days]).column_values(0)
            SELECT id FROM statuses WHERE NOT local AND uri IS NOT NULL
              AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => $1::int)
          SQL
          puts 'Beginning statuses removal... This might take a while...'
          removed = connection.exec_params("DELETE FROM statuses WHERE id = ANY(string_to_array($1, ',')::bigint[])",
                                           [targets.join(',')]).cmd_tuples
          puts "Done after #{now - started}s, removed #{removed} out of #{targets.size} statuses."
        end
        puts 'Run ANALYZE to statuses...'
        connection.exec('ANALYZE statuses')
        unless options[:skip_media_remove]
          started = now
          puts 'Beginning removal of now-orphaned media attachments to free up disk space...'
          orphans = connection.exec_params(<<~SQL, [days - 1])
            SELECT id, file_file_name FROM media_attachments WHERE status_id IS NULL
              AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => $1::int)
          SQL
          orphans.each do |row|
            remove_cached_file('media_attachments', 'files', row['id'], row['file_file_name']) if row['file_file_name']
            connection.exec_params('DELETE FROM media_attachments WHERE id = $1', [row['id']])
          end
          puts "Done after #{now - started}s, removed #{orphans.ntuples} out of #{orphans.ntuples} media_attachments."
        end
      end
    end

    # Rails.cache.clear on Mastodon's cache store (namespace "cache", CACHE_REDIS_* or REDIS_*).
    def cache_clear(args)
      parse(args, {})
      redis = Config.redis('CACHE_')
      begin
        cursor = '0'
        loop do
          cursor, keys = redis.call('SCAN', cursor, 'MATCH', 'cache:*', 'COUNT', 1000)
          redis.call('DEL', *keys) unless keys.empty?
          break if cursor == '0'
        end
      ensure
        redis.close
      end
      puts 'OK'
    end

    # Stand-in only: an old remote status with a cached media file and an old preview card with a
    # cached image, so that the cleanup commands above have something to remove.
    def standin_seed(args)
      options, = parse(args, { days_ago: :numeric })
      days = options[:days_ago] || 30
      ago = "(now() AT TIME ZONE 'utc') - make_interval(days => #{Integer(days)})"
      result = DB.with('mastodon-standin: tootctl') do |connection|
        connection.transaction do
          account_id = DB.value(connection, <<~SQL, [REMOTE_DOMAIN])
            WITH found AS (SELECT id FROM accounts WHERE username = 'standin_remote' AND domain = $1),
                 made AS (INSERT INTO accounts (username, domain) SELECT 'standin_remote', $1
                          WHERE NOT EXISTS (SELECT 1 FROM found) RETURNING id)
            SELECT id FROM found UNION ALL SELECT id FROM made
          SQL
          status_id = DB.value(connection, <<~SQL, [account_id])
            INSERT INTO statuses (account_id, text, local, created_at, updated_at)
            VALUES ($1, 'a remote status (fedictl test stand-in)', false, #{ago}, #{ago}) RETURNING id
          SQL
          connection.exec_params('UPDATE statuses SET uri = $1 WHERE id = $2',
                                 ["https://#{REMOTE_DOMAIN}/statuses/#{status_id}", status_id])
          media_id = DB.value(connection, <<~SQL, [status_id, "https://#{REMOTE_DOMAIN}/media/#{status_id}.png"])
            INSERT INTO media_attachments (status_id, file_file_name, file_file_size, remote_url, created_at, updated_at)
            VALUES ($1, 'standin.png', 1024, $2, #{ago}, #{ago}) RETURNING id
          SQL
          card_id = DB.value(connection, <<~SQL, ["https://#{REMOTE_DOMAIN}/page/#{status_id}"])
            INSERT INTO preview_cards (url, image_file_name, image_file_size, created_at, updated_at)
            VALUES ($1, 'standin.png', 512, #{ago}, #{ago}) RETURNING id
          SQL
          { status_id: status_id.to_i, media_attachment_id: media_id.to_i, preview_card_id: card_id.to_i,
            media_file: write_cached_file('media_attachments', 'files', media_id, 'standin.png', 1024, days),
            preview_card_file: write_cached_file('preview_cards', 'images', card_id, 'standin.png', 512, days) }
        end
      end
      puts JSON.generate(result)
    end

    # Stand-in only: a local status by USERNAME (from v4.5.14 on with a language, default en).
    def standin_post(args)
      spec = Features.status_language? ? { language: :string } : {}
      options, (username, text) = parse(args, spec, arguments: 2)
      DB.with('mastodon-standin: tootctl') do |connection|
        account_id = local_account_id(connection, username)
        raise Failure, 'No user with such username' unless account_id

        id = if Features.status_language?
               DB.value(connection, 'INSERT INTO statuses (account_id, text, local, language) VALUES ($1, $2, true, $3) ' \
                                    'RETURNING id', [account_id, text, options[:language] || 'en'])
             else
               DB.value(connection, 'INSERT INTO statuses (account_id, text, local) VALUES ($1, $2, true) RETURNING id',
                        [account_id, text])
             end
        connection.exec_params('UPDATE statuses SET uri = $1 WHERE id = $2',
                               ["https://#{Config.web_domain}/users/#{username}/statuses/#{id}", id])
        puts "OK #{id}"
      end
    end

    # Stand-in only: the API access token of local user USERNAME (see AccessTokens), for
    # `Authorization: Bearer ...`; real Mastodon issues tokens through OAuth apps.
    def standin_token(args)
      _options, (username,) = parse(args, {}, arguments: 1)
      DB.with('mastodon-standin: tootctl') do |connection|
        row = connection.exec_params(<<~SQL, [username]).first
          SELECT users.id, users.encrypted_password FROM users JOIN accounts ON accounts.id = users.account_id
          WHERE accounts.domain IS NULL AND lower(accounts.username) = lower($1)
        SQL
        raise Failure, 'No user with such username' unless row

        puts AccessTokens.for_user(row['id'], row['encrypted_password'])
      end
    end

    def local_account_id(connection, username)
      connection.exec_params('SELECT id FROM accounts WHERE domain IS NULL AND lower(username) = lower($1)',
                             [username]).first&.fetch('id')
    end

    # Paperclip's layout for cached remote files: cache/<table>/<attachment>/<id partition>/original/<name>.
    def cached_file_path(table, attachment, id, name)
      partition = format('%09d', id.to_i).scan(/\d{3}/).join('/')
      File.join(Config.paperclip_root, 'cache', table, attachment, partition, 'original', name)
    end

    def write_cached_file(table, attachment, id, name, size, days_ago)
      path = cached_file_path(table, attachment, id, name)
      FileUtils.mkdir_p(File.dirname(path))
      File.binwrite(path, "\0" * size)
      time = Time.now - (days_ago * 86_400)
      File.utime(time, time, path)
      path
    end

    # Removes the file, then its directories up to (not including) cache/, as long as they are empty.
    def remove_cached_file(table, attachment, id, name)
      path = cached_file_path(table, attachment, id, name)
      FileUtils.rm_f(path)
      stop = File.join(Config.paperclip_root, 'cache')
      dir = File.dirname(path)
      while dir.start_with?("#{stop}/")
        Dir.rmdir(dir)
        dir = File.dirname(dir)
      end
    rescue Errno::ENOTEMPTY, Errno::ENOENT, Errno::EEXIST
      nil # other files remain there, as upstream
    end

    def dry_run_suffix(options)
      options[:dry_run] ? ' (DRY RUN)' : ''
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # ActiveSupport's number_to_human_size (precision 3, significant).
    def human_size(bytes)
      return "#{bytes} #{bytes == 1 ? 'Byte' : 'Bytes'}" if bytes < 1024

      units = %w(KB MB GB TB)
      exponent = [(Math.log(bytes) / Math.log(1024)).floor, units.size].min
      value = bytes.to_f / (1024**exponent)
      number = value.round(2 - Math.log10(value).floor).to_s.sub(/\.0\z/, '')
      "#{number} #{units[exponent - 1]}"
    end
  end
end
