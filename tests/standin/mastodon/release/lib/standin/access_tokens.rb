# frozen_string_literal: true

require 'openssl'

module StandIn
  # fedictl test stand-in, not Mastodon: API access tokens. Mastodon keeps OAuth tokens
  # (Doorkeeper) in oauth_access_tokens and issues them through OAuth apps; the stand-in has neither.
  # Its token for a local user is derived instead: HMAC-SHA256 keyed with SECRET_KEY_BASE over the
  # user's id and password hash, 43 characters of URL-safe base64 like Doorkeeper's. It is valid for
  # `Authorization: Bearer TOKEN` with every scope as long as those stay the same;
  # `bin/tootctl standin token USER` prints it.
  module AccessTokens
    PURPOSE = 'fedictl-standin-access-token'

    module_function

    def for_user(user_id, encrypted_password)
      digest = OpenSSL::HMAC.digest('SHA256', ENV.fetch('SECRET_KEY_BASE', ''),
                                    "#{PURPOSE}:#{user_id}:#{encrypted_password}")
      [digest].pack('m0').tr('+/', '-_').delete('=')
    end

    # The local user whose token TOKEN is (a row: id, account_id, username, confirmed, approved),
    # or nil.
    def find_user(connection, token)
      return nil unless token.is_a?(String) && token.match?(/\A[A-Za-z0-9_-]{43}\z/)

      rows = connection.exec(<<~SQL)
        SELECT users.id, users.account_id, users.encrypted_password, accounts.username,
               users.confirmed_at IS NOT NULL AS confirmed, users.approved
        FROM users JOIN accounts ON accounts.id = users.account_id WHERE accounts.domain IS NULL
      SQL
      rows.find { |row| OpenSSL.secure_compare(for_user(row['id'], row['encrypted_password']), token) }
    end
  end
end
