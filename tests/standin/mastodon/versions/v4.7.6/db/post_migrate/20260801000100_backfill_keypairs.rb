# frozen_string_literal: true

# fedictl test stand-in (v4.7.6, post-deployment), not Mastodon: one key pair row per local account,
# idempotent (4.7.1 fixed upstream's 4.7 migrations "not re-running cleanly when interrupted").
class BackfillKeypairs < StandIn::Migration
  def up
    execute <<~SQL
      INSERT INTO keypairs (account_id, public_key)
      SELECT a.id, 'stand-in public key of account ' || a.id FROM accounts a
      WHERE a.domain IS NULL AND NOT EXISTS (SELECT 1 FROM keypairs k WHERE k.account_id = a.id)
    SQL
  end
end
