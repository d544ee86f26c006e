# frozen_string_literal: true

# fedictl test stand-in (v4.5.14, post-deployment), not Mastodon.
class AddIndexStatusesOnLanguage < StandIn::Migration
  disable_ddl_transaction!

  def up
    execute 'CREATE INDEX CONCURRENTLY IF NOT EXISTS index_statuses_on_language ON statuses (language)'
  end
end
