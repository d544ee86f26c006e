# frozen_string_literal: true

# fedictl test stand-in (v4.5.15-broken, pre-deployment), not Mastodon: additive, so v4.5.14 keeps
# running on it.
class AddDiscoverableToAccounts < StandIn::Migration
  def up
    execute 'ALTER TABLE accounts ADD COLUMN discoverable boolean'
  end
end
