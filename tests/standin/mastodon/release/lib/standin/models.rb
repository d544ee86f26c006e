# frozen_string_literal: true

# Just enough of Mastodon's models for `bin/rails runner` one-liners in deployment checks.
# fedictl test stand-in, not Mastodon.
class Account
  Record = Struct.new(:id, :username, :domain)

  def self.find_local(username)
    StandIn::DB.with('mastodon-standin: runner') do |connection|
      row = connection.exec_params(<<~SQL, [username.to_s]).first
        SELECT id, username, domain FROM accounts WHERE domain IS NULL AND lower(username) = lower($1)
      SQL
      row && Record.new(row['id'].to_i, row['username'], row['domain'])
    end
  end

  def self.count
    StandIn::DB.with('mastodon-standin: runner') do |connection|
      StandIn::DB.value(connection, 'SELECT count(*) FROM accounts').to_i
    end
  end
end

class User
  def self.count
    StandIn::DB.with('mastodon-standin: runner') do |connection|
      StandIn::DB.value(connection, 'SELECT count(*) FROM users').to_i
    end
  end
end
