# frozen_string_literal: true

# fedictl test stand-in (v4.5.13, post-deployment), not Mastodon.
class AddIndexAccountsOnUsernameAndDomainLower < StandIn::Migration
  disable_ddl_transaction!

  def up
    execute <<~SQL
      CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS index_accounts_on_username_and_domain_lower
        ON accounts (lower(username), COALESCE(lower(domain), ''))
    SQL
  end
end
