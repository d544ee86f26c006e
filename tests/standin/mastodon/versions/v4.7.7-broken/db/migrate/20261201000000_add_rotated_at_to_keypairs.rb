# frozen_string_literal: true

# fedictl test stand-in (v4.7.7-broken, pre-deployment), not Mastodon: additive; v4.7.6 runs fine on it.
class AddRotatedAtToKeypairs < StandIn::Migration
  def up
    execute 'ALTER TABLE keypairs ADD COLUMN rotated_at timestamp without time zone'
  end
end
