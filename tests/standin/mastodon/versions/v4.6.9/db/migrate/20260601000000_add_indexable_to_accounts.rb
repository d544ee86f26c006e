# frozen_string_literal: true

# fedictl test stand-in (v4.6.9, pre-deployment), not Mastodon: additive, so the 4.5 code keeps running
# on the migrated schema.
class AddIndexableToAccounts < StandIn::Migration
  def up
    execute 'ALTER TABLE accounts ADD COLUMN indexable boolean NOT NULL DEFAULT false'
  end
end
