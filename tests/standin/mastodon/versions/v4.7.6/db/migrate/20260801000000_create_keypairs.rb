# frozen_string_literal: true

# fedictl test stand-in (v4.7.6, pre-deployment), not Mastodon: 4.7.0 moves every local account's key
# pair into a new `keypairs` table (one of its "unusually long" migrations); the stand-in creates it.
class CreateKeypairs < StandIn::Migration
  def up
    execute <<~SQL
      CREATE TABLE IF NOT EXISTS keypairs (
        id bigserial PRIMARY KEY,
        account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        public_key text NOT NULL,
        created_at timestamp without time zone NOT NULL DEFAULT now()
      )
    SQL
  end
end
