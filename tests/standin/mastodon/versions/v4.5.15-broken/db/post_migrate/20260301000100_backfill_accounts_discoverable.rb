# frozen_string_literal: true

# fedictl test stand-in (v4.5.15-broken, post-deployment), not Mastodon.
class BackfillAccountsDiscoverable < StandIn::Migration
  def up
    execute 'UPDATE accounts SET discoverable = false WHERE discoverable IS NULL AND domain IS NULL'
  end
end
