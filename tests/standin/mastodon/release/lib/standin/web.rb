# frozen_string_literal: true

require 'rack'
require_relative 'access_tokens'
require_relative 'assets'
require_relative 'features'
require_relative 'media'

module StandIn
  # The stand-in's web process: a Rack app served by real puma. Answers the endpoints a deployment
  # checks, with Mastodon's host authorization and force_ssl rules and data read from PostgreSQL,
  # and takes media uploads (stored on the file system or through an S3 API, see Media and S3).
  class Web
    HTML = 'text/html; charset=utf-8'
    JSON_TYPE = 'application/json; charset=utf-8'
    ACTIVITY_JSON = 'application/activity+json; charset=utf-8'
    JRD_JSON = 'application/jrd+json; charset=utf-8'
    USERNAME = '[a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?'
    NODEINFO_SCHEMA = 'http://nodeinfo.diaspora.software/ns/schema/2.0'
    TITLE_SUFFIX = '(fedictl test stand-in, not Mastodon)'
    SOURCE_URL = 'https://fedictl.invalid/tests/standin/mastodon'

    ROUTES = [
      [%r{\A/\z}, :home],
      [%r{\A/api/v2/instance\z}, :instance],
      [%r{\A/api/v1/timelines/public\z}, :public_timeline],
      [%r{\A/\.well-known/nodeinfo\z}, :nodeinfo_links],
      [%r{\A/nodeinfo/2\.0\z}, :nodeinfo],
      [%r{\A/\.well-known/webfinger\z}, :webfinger],
      [%r{\A/users/(#{USERNAME})/outbox\z}io, :outbox],
      [%r{\A/users/(#{USERNAME})\z}io, :actor],
      [%r{\A/@(#{USERNAME})\z}io, :profile],
      [%r{\A/api/v1/media/([^/]+)\z}, :show_media],
    ].freeze
    POST_ROUTES = [
      [%r{\A/api/v2/media\z}, :create_media],
    ].freeze

    def call(env)
      request = Rack::Request.new(env)
      # /health is exempt from host authorization and from the https redirect, as upstream.
      return text(200, 'OK') if request.path_info == '/health'
      return text(403, 'Blocked host') unless allowed_host?(request)
      return redirect_to_https(request) unless request.ssl?

      status, headers, body = route(request)
      headers['strict-transport-security'] = 'max-age=63072000; includeSubDomains'
      log(request, status)
      [status, headers, body]
    rescue StandardError => e
      warn "[stand-in web] #{request&.request_method} #{request&.fullpath} -> 500 #{e.class}: #{e.message}"
      [500, { 'content-type' => HTML }, [File.read(File.join(ROOT, 'public', '500.html'))]]
    end

    private

    def route(request)
      routes = case request.request_method
               when 'GET', 'HEAD' then ROUTES
               when 'POST' then POST_ROUTES
               else return not_found
               end
      routes.each do |pattern, action|
        match = pattern.match(request.path_info)
        return send(action, request, *match.captures) if match
      end
      not_found(request)
    end

    # Rails' HostAuthorization checks Host and X-Forwarded-Host.
    def allowed_host?(request)
      hosts = [request.get_header('HTTP_HOST')]
      forwarded = request.get_header('HTTP_X_FORWARDED_HOST')
      hosts << forwarded.split(/,\s*/).last if forwarded
      allowed = Config.allowed_hosts
      hosts.all? { |host| host && allowed.include?(host.sub(/:\d+\z/, '').downcase) }
    end

    # force_ssl: 301 for GET/HEAD, 307 for anything else.
    def redirect_to_https(request)
      host = request.get_header('HTTP_HOST').to_s.sub(/:\d+\z/, '')
      status = %w(GET HEAD).include?(request.request_method) ? 301 : 307
      [status, { 'location' => "https://#{host}#{request.fullpath}", 'content-type' => HTML }, []]
    end

    def base_url
      "https://#{Config.web_domain}"
    end

    def home(_request)
      html(200, <<~HTML)
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <title>#{h(title)}</title>
        <link rel="stylesheet" href="#{h(Assets.manifest['application.css'].to_s)}">
        <script src="#{h(Assets.manifest['application.js'].to_s)}"></script>
        </head><body><h1>#{h(title)}</h1>
        <p>Mastodon #{h(Mastodon::Version.to_s)} stand-in at #{h(Config.local_domain)}.</p></body></html>
      HTML
    end

    def instance(_request)
      counts = usage_counts
      # Like Mastodon, the web process also needs the cache Redis (a broken Redis shows here).
      redis = Config.redis('CACHE_')
      begin
        redis.call('INCR', 'cache:standin:instance_requests')
      ensure
        redis.close
      end
      json(200, {
             domain: Config.local_domain,
             title: title,
             version: Mastodon::Version.to_s,
             source_url: SOURCE_URL,
             description: "A fedictl test stand-in for Mastodon #{Mastodon::Version.to_s}; not Mastodon.",
             usage: { users: { active_month: counts[:users] } },
             languages: ['en'],
             configuration: { urls: { streaming: ENV.fetch('STREAMING_API_BASE_URL') { "wss://#{Config.web_domain}" } } },
             registrations: { enabled: false, approval_required: true, message: nil, url: nil },
             contact: { email: ENV.fetch('SMTP_FROM_ADDRESS', "notifications@#{Config.local_domain}"), account: nil },
           })
    end

    def nodeinfo_links(_request)
      json(200, { links: [{ rel: NODEINFO_SCHEMA, href: "#{base_url}/nodeinfo/2.0" }] })
    end

    def nodeinfo(_request)
      counts = usage_counts
      json(200, {
             version: '2.0',
             software: { name: 'mastodon', version: Mastodon::Version.to_s },
             protocols: ['activitypub'],
             services: { outbound: [], inbound: [] },
             usage: {
               users: { total: counts[:users], activeMonth: counts[:users], activeHalfyear: counts[:users] },
               localPosts: counts[:statuses],
             },
             openRegistrations: false,
             metadata: { nodeName: title, nodeDescription: 'fedictl test stand-in, not Mastodon' },
           }, type: 'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.0#"; charset=utf-8')
    end

    def webfinger(request)
      resource = request.params['resource'].to_s
      return json(400, { error: 'Missing resource parameter' }) if resource.empty?

      username = webfinger_username(resource)
      account = username && find_local_account(username)
      return json(404, { error: 'Record not found' }) unless account

      name = account['username']
      [200, { 'content-type' => JRD_JSON, 'access-control-allow-origin' => '*', 'vary' => 'Accept' },
       [JSON.generate({
                        subject: "acct:#{name}@#{Config.local_domain}",
                        aliases: ["#{base_url}/@#{name}", "#{base_url}/users/#{name}"],
                        links: [
                          { rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: "#{base_url}/@#{name}" },
                          { rel: 'self', type: 'application/activity+json', href: "#{base_url}/users/#{name}" },
                        ],
                      })]]
    end

    def webfinger_username(resource)
      domains = [Config.local_domain, Config.web_domain].map(&:downcase)
      case resource
      when /\A(?:acct:)?@?(#{USERNAME})@([^@\s]+)\z/io
        Regexp.last_match(1) if domains.include?(Regexp.last_match(2).downcase)
      when %r{\Ahttps://([^/]+)/(?:users/|@)(#{USERNAME})\z}io
        Regexp.last_match(2) if domains.include?(Regexp.last_match(1).downcase)
      end
    end

    def actor(request, username)
      account = find_local_account(username)
      return not_found(request) unless account
      return profile(request, username) unless activitypub?(request)

      id = "#{base_url}/users/#{account['username']}"
      [200, { 'content-type' => ACTIVITY_JSON, 'vary' => 'Accept' }, [JSON.generate({
        '@context': ['https://www.w3.org/ns/activitystreams', 'https://w3id.org/security/v1'],
        id: id,
        type: 'Person',
        following: "#{id}/following",
        followers: "#{id}/followers",
        inbox: "#{id}/inbox",
        outbox: "#{id}/outbox",
        preferredUsername: account['username'],
        name: account['username'],
        summary: '<p>fedictl test stand-in account, not Mastodon</p>',
        url: "#{base_url}/@#{account['username']}",
        manuallyApprovesFollowers: false,
        published: account['created_at'],
        endpoints: { sharedInbox: "#{base_url}/inbox" },
      })]]
    end

    def outbox(request, username)
      account = find_local_account(username)
      return not_found(request) unless account

      id = "#{base_url}/users/#{account['username']}"
      statuses = statuses_of(account['id'])
      items = statuses.map do |status|
        note = { id: "#{id}/statuses/#{status[:id]}", type: 'Note', attributedTo: id, content: status[:content],
                 published: status[:created_at], to: ['https://www.w3.org/ns/activitystreams#Public'] }
        note[:contentMap] = { status[:language] => status[:content] } if status[:language]
        { id: "#{note[:id]}/activity", type: 'Create', actor: id, published: status[:created_at], object: note }
      end
      [200, { 'content-type' => ACTIVITY_JSON, 'vary' => 'Accept' }, [JSON.generate({
        '@context': 'https://www.w3.org/ns/activitystreams',
        id: "#{id}/outbox", type: 'OrderedCollection', totalItems: items.size, orderedItems: items,
      })]]
    end

    def public_timeline(request)
      local_only = %w(true 1).include?(request.params['local'].to_s)
      statuses = statuses_of(nil, local_only: local_only).map do |status|
        {
          id: status[:id].to_s, created_at: status[:created_at], content: status[:content],
          language: status[:language], visibility: 'public', uri: status[:uri],
          account: { id: status[:account_id].to_s, username: status[:username],
                     acct: status[:domain] ? "#{status[:username]}@#{status[:domain]}" : status[:username] },
        }
      end
      json(200, statuses)
    end

    def profile(request, username)
      account = find_local_account(username)
      return not_found(request) unless account

      html(200, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>@#{h(account['username'])}" \
                "</title></head><body><h1>@#{h(account['username'])}@#{h(Config.local_domain)}</h1>" \
                "<p>#{h(title)}</p></body></html>\n")
    end

    # POST /api/v2/media (Api::V2::MediaController#create): multipart/form-data with the file in
    # `file`, a user's Bearer token. 200 with the attachment (the stand-in processes nothing, so never
    # 202); 422 when the file is missing, of a type the stand-in does not take, or too large. A storage
    # server that cannot be reached answers 503 as Mastodon's API does for
    # Seahorse::Client::NetworkingError; one that refuses the write (S3::Error) is not rescued, as
    # upstream's aws-sdk errors are not: the request ends in the 500 page.
    def create_media(request)
      _user, refusal = authenticate(request)
      return refusal if refusal

      file = begin
        request.POST['file']
      rescue StandardError => e # Rack's multipart errors: a malformed body
        warn "[stand-in web] POST #{request.path_info}: unreadable body: #{e.class}: #{e.message}"
        return json(400, { error: 'Bad Request' })
      end
      return json(422, { error: "Validation failed: File can't be blank" }) unless file.is_a?(Hash) && file[:tempfile]

      json(200, Media.create(file[:filename], file[:type], file[:tempfile].path))
    rescue Media::Invalid => e
      json(422, { error: "Validation failed: #{e.message}" })
    rescue S3::NetworkingError => e
      warn "[stand-in web] Storage server error: #{e.message}"
      json(503, { error: 'There was a temporary problem serving your request, please try again' })
    ensure
      # What Rack::TempfileReaper (in Rails' middleware) does: the uploaded parts' files go at once.
      Array(request.env['rack.tempfiles']).each(&:close!)
    end

    # GET /api/v1/media/:id (Api::V1::MediaController#show): an attachment not yet used by a status.
    # The stand-in's schema records no owner, so any local user's token sees any such attachment.
    def show_media(request, id)
      _user, refusal = authenticate(request)
      return refusal if refusal

      attachment = Media.find_unattached(id)
      attachment ? json(200, attachment) : not_found(request)
    end

    # Doorkeeper's answer to a missing or unknown token, then Api::BaseController#require_user!'s.
    def authenticate(request)
      token = request.get_header('HTTP_AUTHORIZATION').to_s[/\ABearer\s+(\S+)\s*\z/i, 1]
      user = token && DB.with('mastodon-standin: web') { |connection| AccessTokens.find_user(connection, token) }
      unless user
        return [nil, [401, { 'content-type' => JSON_TYPE,
                             'www-authenticate' => 'Bearer realm="Doorkeeper", error="invalid_token", ' \
                                                   'error_description="The access token is invalid"' },
                      [JSON.generate({ error: 'The access token is invalid' })]]]
      end
      return [nil, json(403, { error: 'Your login is missing a confirmed e-mail address' })] unless user['confirmed'] == 't'
      return [nil, json(403, { error: 'Your login is currently pending approval' })] unless user['approved'] == 't'

      [user, nil]
    end

    def not_found(request = nil)
      if request&.path_info&.start_with?('/api/')
        json(404, { error: 'Record not found' })
      else
        html(404, "<!DOCTYPE html><html><body><h1>The page you are looking for isn't here.</h1></body></html>\n")
      end
    end

    def title
      "#{Config.local_domain} #{TITLE_SUFFIX}"
    end

    def activitypub?(request)
      accept = request.get_header('HTTP_ACCEPT').to_s
      accept.include?('application/activity+json') || accept.include?('application/ld+json')
    end

    def usage_counts
      DB.with('mastodon-standin: web') do |connection|
        {
          users: DB.value(connection, <<~SQL).to_i,
            SELECT count(*) FROM users JOIN accounts ON accounts.id = users.account_id WHERE accounts.domain IS NULL
          SQL
          statuses: DB.value(connection, <<~SQL).to_i,
            SELECT count(*) FROM statuses JOIN accounts ON accounts.id = statuses.account_id WHERE accounts.domain IS NULL
          SQL
        }
      end
    end

    def find_local_account(username)
      DB.with('mastodon-standin: web') do |connection|
        connection.exec_params(<<~SQL, [username]).first
          SELECT id, username, #{DB.iso8601('created_at')} AS created_at
          FROM accounts WHERE domain IS NULL AND lower(username) = lower($1)
        SQL
      end
    end

    # Reads statuses; from v4.5.14 on the language column too (see Features).
    def statuses_of(account_id, local_only: false)
      language = Features.status_language? ? 'statuses.language' : 'NULL'
      conditions = []
      params = []
      if account_id
        params << account_id
        conditions << "statuses.account_id = $#{params.size}"
      end
      conditions << 'accounts.domain IS NULL' if local_only
      where = conditions.empty? ? '' : "WHERE #{conditions.join(' AND ')}"
      DB.with('mastodon-standin: web') do |connection|
        connection.exec_params(<<~SQL, params).map do |row|
          SELECT statuses.id, statuses.account_id, statuses.text, statuses.uri, #{language} AS language,
                 #{DB.iso8601('statuses.created_at')} AS created_at, accounts.username, accounts.domain
          FROM statuses JOIN accounts ON accounts.id = statuses.account_id
          #{where} ORDER BY statuses.id DESC LIMIT 20
        SQL
          { id: row['id'].to_i, account_id: row['account_id'].to_i, content: "<p>#{h(row['text'])}</p>",
            uri: row['uri'], language: row['language'], created_at: row['created_at'],
            username: row['username'], domain: row['domain'] }
        end
      end
    end

    def h(value)
      Rack::Utils.escape_html(value.to_s)
    end

    def text(status, body)
      [status, { 'content-type' => 'text/plain; charset=utf-8' }, [body]]
    end

    def html(status, body)
      [status, { 'content-type' => HTML }, [body]]
    end

    def json(status, data, type: JSON_TYPE)
      [status, { 'content-type' => type }, [JSON.generate(data)]]
    end

    def log(request, status)
      $stdout.puts "[stand-in web] #{request.request_method} #{request.fullpath} -> #{status}"
      $stdout.flush
    end
  end
end
