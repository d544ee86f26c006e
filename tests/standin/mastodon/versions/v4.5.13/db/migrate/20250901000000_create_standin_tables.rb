# frozen_string_literal: true

# fedictl test stand-in (v4.5.13 schema), not Mastodon: the few tables the stand-in uses.
class CreateStandinTables < StandIn::Migration
  def up
    execute <<~SQL
      CREATE TABLE accounts (
        id bigserial PRIMARY KEY,
        username character varying NOT NULL DEFAULT '',
        domain character varying,
        created_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        updated_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
      );
      CREATE TABLE users (
        id bigserial PRIMARY KEY,
        account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        email character varying NOT NULL DEFAULT '',
        encrypted_password character varying NOT NULL DEFAULT '',
        role character varying,
        confirmed_at timestamp(6) without time zone,
        approved boolean NOT NULL DEFAULT true,
        created_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        updated_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
      );
      CREATE UNIQUE INDEX index_users_on_email ON users (email);
      CREATE TABLE statuses (
        id bigserial PRIMARY KEY,
        account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        text text NOT NULL DEFAULT '',
        uri character varying,
        local boolean,
        created_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        updated_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
      );
      CREATE TABLE media_attachments (
        id bigserial PRIMARY KEY,
        status_id bigint REFERENCES statuses (id) ON DELETE SET NULL,
        file_file_name character varying,
        file_file_size integer,
        remote_url character varying NOT NULL DEFAULT '',
        created_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        updated_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
      );
      CREATE TABLE preview_cards (
        id bigserial PRIMARY KEY,
        url character varying NOT NULL DEFAULT '',
        type integer NOT NULL DEFAULT 0,
        image_file_name character varying,
        image_file_size integer,
        created_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
        updated_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
      );
    SQL
  end
end
