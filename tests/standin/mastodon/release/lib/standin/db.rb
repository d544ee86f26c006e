# frozen_string_literal: true

module StandIn
  # PostgreSQL access for the stand-in: one short-lived connection per use (no pool is shared
  # across puma's fork, so preload_app! is safe).
  module DB
    module_function

    def connect(application_name)
      open_connection(Config.db_params(application_name))
    end

    # Like Rails, only warnings and errors from the server reach the output.
    def open_connection(params)
      connection = PG.connect(**params)
      connection.exec('SET client_min_messages TO warning')
      connection
    end

    def with(application_name, &)
      with_params(Config.db_params(application_name), &)
    end

    def with_params(params)
      connection = open_connection(params)
      yield connection
    ensure
      connection&.close
    end

    def value(connection, sql, params = [])
      connection.exec_params(sql, params).getvalue(0, 0)
    end

    def column?(connection, table, column)
      sql = 'SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() ' \
            'AND table_name = $1 AND column_name = $2'
      connection.exec_params(sql, [table, column]).ntuples.positive?
    end

    # Timestamps are stored in UTC without time zone, like Rails; this renders them as ISO 8601.
    def iso8601(column)
      %(to_char(#{column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    end
  end
end
