package config

import "github.com/hashicorp/hcl/v2"

// The structs in this file are the HCL schema as gohcl sees it. Optional
// single blocks are pointers so that gohcl reports a second copy as a
// duplicate. Ranges are kept for the values that build checks, so that its
// diagnostics point at the attribute at fault.

type fileSchema struct {
	DataDir  *string         `hcl:"data_dir,optional"`
	Ingress  *ingressSchema  `hcl:"ingress,block"`
	Identity *identitySchema `hcl:"identity,block"`
	Nomad    *nomadSchema    `hcl:"nomad,block"`
	Admin    *adminSchema    `hcl:"admin,block"`
	Sessions *sessionsSchema `hcl:"sessions,block"`
	Log      *logSchema      `hcl:"log,block"`
	TLS      *tlsSchema      `hcl:"tls,block"`
	Hosts    []hostSchema    `hcl:"host,block"`
	Calls    []callSchema    `hcl:"call,block"`
	Serves   []serveSchema   `hcl:"serve,block"`

	DataDirRange hcl.Range `hcl:"data_dir,attr_value_range"`
}

type ingressSchema struct {
	// HTTP and HTTPS are a port number or an "address:port" string.
	HTTP           hcl.Expression `hcl:"http,optional"`
	HTTPS          hcl.Expression `hcl:"https,optional"`
	TrustedProxies []string       `hcl:"trusted_proxies,optional"`
	MaxConnections *int           `hcl:"max_connections,optional"`
	// BodyMinRate is a pointer because 0, written, turns the check off.
	BodyMinRate     *int64  `hcl:"body_min_rate,optional"`
	BodyIdleTimeout *string `hcl:"body_idle_timeout,optional"`
	// MaxConnectionsPerClient is a pointer because 0, written, turns the
	// share off.
	MaxConnectionsPerClient *int    `hcl:"max_connections_per_client,optional"`
	WriteIdleTimeout        *string `hcl:"write_idle_timeout,optional"`

	MaxConnectionsPerClientRange hcl.Range `hcl:"max_connections_per_client,attr_value_range"`
	WriteIdleTimeoutRange        hcl.Range `hcl:"write_idle_timeout,attr_value_range"`
	TrustedProxiesRange          hcl.Range `hcl:"trusted_proxies,attr_value_range"`
	MaxConnectionsRange          hcl.Range `hcl:"max_connections,attr_value_range"`
	BodyMinRateRange             hcl.Range `hcl:"body_min_rate,attr_value_range"`
	BodyIdleTimeoutRange         hcl.Range `hcl:"body_idle_timeout,attr_value_range"`
}

type identitySchema struct {
	PLCURL         *string `hcl:"plc_url,optional"`
	HandleResolver *string `hcl:"handle_resolver,optional"`
	AllowInsecure  bool    `hcl:"allow_insecure,optional"`

	PLCURLRange         hcl.Range `hcl:"plc_url,attr_value_range"`
	HandleResolverRange hcl.Range `hcl:"handle_resolver,attr_value_range"`
}

type nomadSchema struct {
	Address   *string `hcl:"address,optional"`
	Token     string  `hcl:"token,optional"`
	Namespace string  `hcl:"namespace,optional"`
	Region    string  `hcl:"region,optional"`
	Refresh   *string `hcl:"refresh,optional"`

	AddressRange hcl.Range `hcl:"address,attr_value_range"`
	RefreshRange hcl.Range `hcl:"refresh,attr_value_range"`
}

type adminSchema struct {
	Listen *string  `hcl:"listen,optional"`
	Hosts  []string `hcl:"hosts,optional"`
	Pprof  bool     `hcl:"pprof,optional"`

	ListenRange hcl.Range `hcl:"listen,attr_value_range"`
}

// sessionsSchema is the sessions block: where sessions are stored, how
// they are sealed, and their limits.
type sessionsSchema struct {
	Store         *string        `hcl:"store,optional"`
	URL           *string        `hcl:"url,optional"`
	KeyPrefix     *string        `hcl:"key_prefix,optional"`
	EncryptionKey hcl.Expression `hcl:"encryption_key,optional"`
	MaxSessions   *int           `hcl:"max_sessions,optional"`
	MaxPerAccount *int           `hcl:"max_per_account,optional"`

	DefRange           hcl.Range `hcl:",def_range"`
	StoreRange         hcl.Range `hcl:"store,attr_value_range"`
	URLRange           hcl.Range `hcl:"url,attr_value_range"`
	KeyPrefixRange     hcl.Range `hcl:"key_prefix,attr_value_range"`
	MaxSessionsRange   hcl.Range `hcl:"max_sessions,attr_value_range"`
	MaxPerAccountRange hcl.Range `hcl:"max_per_account,attr_value_range"`
}

type logSchema struct {
	Level  *string `hcl:"level,optional"`
	Format *string `hcl:"format,optional"`

	LevelRange  hcl.Range `hcl:"level,attr_value_range"`
	FormatRange hcl.Range `hcl:"format,attr_value_range"`
}

type tlsSchema struct {
	ACME     *acmeSchema `hcl:"acme,block"`
	CertFile string      `hcl:"cert_file,optional"`
	KeyFile  string      `hcl:"key_file,optional"`

	CertFileRange hcl.Range `hcl:"cert_file,attr_value_range"`
	KeyFileRange  hcl.Range `hcl:"key_file,attr_value_range"`
}

type acmeSchema struct {
	Email     string  `hcl:"email,optional"`
	Directory *string `hcl:"directory,optional"`
	CAFile    string  `hcl:"ca_file,optional"`

	EmailRange     hcl.Range `hcl:"email,attr_value_range"`
	DirectoryRange hcl.Range `hcl:"directory,attr_value_range"`
	CAFileRange    hcl.Range `hcl:"ca_file,attr_value_range"`
}

type hostSchema struct {
	Hostname string         `hcl:"hostname,label"`
	Name     string         `hcl:"name,optional"`
	Backend  *string        `hcl:"backend,optional"`
	ATProto  *atprotoSchema `hcl:"atproto,block"`
	TLS      *hostTLSSchema `hcl:"tls,block"`
	// RequireATProto and APIKeyAuth close the host: see access.
	RequireATProto *requireATProtoSchema `hcl:"require_atproto,block"`
	APIKeyAuth     *apikeyAuthSchema     `hcl:"apikey_auth,block"`
	// OAuth are the sign-in providers other than AT Protocol, and
	// RequireOAuth the accounts of theirs that get in: see oauth.go.
	OAuth        []oauthSchema        `hcl:"oauth,block"`
	RequireOAuth []requireOAuthSchema `hcl:"require_oauth,block"`

	DefRange      hcl.Range `hcl:",def_range"`
	HostnameRange hcl.Range `hcl:"hostname,label_range"`
	BackendRange  hcl.Range `hcl:"backend,attr_value_range"`
}

type atprotoSchema struct {
	Name      string   `hcl:"name,optional"`
	Scopes    []string `hcl:"scopes,optional"`
	Local     *int     `hcl:"local,optional"`
	ClientURI string   `hcl:"client_uri,optional"`
	LogoURI   string   `hcl:"logo_uri,optional"`
	TOSURI    string   `hcl:"tos_uri,optional"`
	PolicyURI string   `hcl:"policy_uri,optional"`
	// SigninRequired and AllowedDIDs are read only to say where their
	// settings moved (require_atproto).
	SigninRequired *bool     `hcl:"signin_required,optional"`
	AllowedDIDs    *[]string `hcl:"allowed_dids,optional"`

	DefRange            hcl.Range `hcl:",def_range"`
	ScopesRange         hcl.Range `hcl:"scopes,attr_value_range"`
	LocalRange          hcl.Range `hcl:"local,attr_value_range"`
	ClientURIRange      hcl.Range `hcl:"client_uri,attr_value_range"`
	LogoURIRange        hcl.Range `hcl:"logo_uri,attr_value_range"`
	TOSURIRange         hcl.Range `hcl:"tos_uri,attr_value_range"`
	PolicyURIRange      hcl.Range `hcl:"policy_uri,attr_value_range"`
	SigninRequiredRange hcl.Range `hcl:"signin_required,attr_range"`
	AllowedDIDsRange    hcl.Range `hcl:"allowed_dids,attr_range"`
}

// requireATProtoSchema keeps its lists as expressions so that each
// diagnostic can point at the one element at fault.
type requireATProtoSchema struct {
	DIDs        hcl.Expression `hcl:"dids,optional"`
	Handles     hcl.Expression `hcl:"handles,optional"`
	PublicPaths hcl.Expression `hcl:"public_paths,optional"`
	// HandleMaxAge is a duration string such as "2h".
	HandleMaxAge *string `hcl:"handle_max_age,optional"`

	DefRange          hcl.Range `hcl:",def_range"`
	HandleMaxAgeRange hcl.Range `hcl:"handle_max_age,attr_value_range"`
}

// oauthSchema is an oauth "<name>" block: a sign-in provider other than
// AT Protocol. client_id and client_secret stay expressions so that build
// can tell a secret written out in the file from one read with env(), and
// scopes so that each diagnostic points at its element; the rest are
// optional here so that build can say what to write when one is missing.
type oauthSchema struct {
	Name           string                     `hcl:"name,label"`
	ClientID       hcl.Expression             `hcl:"client_id,optional"`
	ClientSecret   hcl.Expression             `hcl:"client_secret,optional"`
	Issuer         *string                    `hcl:"issuer,optional"`
	AuthorizeURL   *string                    `hcl:"authorize_url,optional"`
	AccessTokenURL *string                    `hcl:"access_token_url,optional"`
	UserinfoURL    *string                    `hcl:"userinfo_url,optional"`
	Scopes         hcl.Expression             `hcl:"scopes,optional"`
	Parameters     []authorizeParameterSchema `hcl:"authorize_parameter,block"`

	DefRange            hcl.Range `hcl:",def_range"`
	NameRange           hcl.Range `hcl:"name,label_range"`
	IssuerRange         hcl.Range `hcl:"issuer,attr_value_range"`
	AuthorizeURLRange   hcl.Range `hcl:"authorize_url,attr_value_range"`
	AccessTokenURLRange hcl.Range `hcl:"access_token_url,attr_value_range"`
	UserinfoURLRange    hcl.Range `hcl:"userinfo_url,attr_value_range"`
}

// authorizeParameterSchema is one parameter added to a provider's
// authorization request.
type authorizeParameterSchema struct {
	Name  *string `hcl:"name,optional"`
	Value *string `hcl:"value,optional"`

	DefRange   hcl.Range `hcl:",def_range"`
	NameRange  hcl.Range `hcl:"name,attr_value_range"`
	ValueRange hcl.Range `hcl:"value,attr_value_range"`
}

// requireOAuthSchema is a require_oauth "<provider>" block. Its lists
// stay expressions so that each diagnostic points at its element.
type requireOAuthSchema struct {
	Provider string         `hcl:"provider,label"`
	Emails   hcl.Expression `hcl:"emails,optional"`
	Domains  hcl.Expression `hcl:"domains,optional"`

	DefRange      hcl.Range `hcl:",def_range"`
	ProviderRange hcl.Range `hcl:"provider,label_range"`
}

type apikeyAuthSchema struct {
	// Users is one string of htpasswd lines (a heredoc, or env()), or a
	// list of entries.
	Users hcl.Expression `hcl:"users"`

	DefRange hcl.Range `hcl:",def_range"`
}

type hostTLSSchema struct {
	Mode     string `hcl:"mode,optional"`
	CertFile string `hcl:"cert_file,optional"`
	KeyFile  string `hcl:"key_file,optional"`

	DefRange      hcl.Range `hcl:",def_range"`
	ModeRange     hcl.Range `hcl:"mode,attr_value_range"`
	CertFileRange hcl.Range `hcl:"cert_file,attr_value_range"`
	KeyFileRange  hcl.Range `hcl:"key_file,attr_value_range"`
}

type callSchema struct {
	Label          string  `hcl:"label,label"`
	Name           string  `hcl:"name,optional"`
	Port           int     `hcl:"port"`
	Bind           *string `hcl:"bind,optional"`
	Endpoint       string  `hcl:"endpoint"`
	Insecure       bool    `hcl:"insecure,optional"`
	OperationsOnly bool    `hcl:"operations_only,optional"`
	MaxBodyBytes   *int64  `hcl:"max_body_bytes,optional"`
	Timeout        *string `hcl:"timeout,optional"`
	MaxConnections *int    `hcl:"max_connections,optional"`
	// ServiceProxies and Hosts stay expressions so that each diagnostic
	// points at its element, and so that an empty service_proxies (no
	// Atproto-Proxy allowed) differs from none written (any allowed).
	ServiceProxies hcl.Expression    `hcl:"service_proxies,optional"`
	Hosts          hcl.Expression    `hcl:"hosts,optional"`
	Operations     []operationSchema `hcl:"operation,block"`
	Auth           *callAuthSchema   `hcl:"auth,block"`

	DefRange            hcl.Range `hcl:",def_range"`
	LabelRange          hcl.Range `hcl:"label,label_range"`
	PortRange           hcl.Range `hcl:"port,attr_value_range"`
	BindRange           hcl.Range `hcl:"bind,attr_value_range"`
	EndpointRange       hcl.Range `hcl:"endpoint,attr_value_range"`
	MaxBodyBytesRange   hcl.Range `hcl:"max_body_bytes,attr_value_range"`
	TimeoutRange        hcl.Range `hcl:"timeout,attr_value_range"`
	MaxConnectionsRange hcl.Range `hcl:"max_connections,attr_value_range"`
}

// callAuthSchema is a call's auth block: the credential ioproxy adds to
// each call. credential stays an expression so that build can tell a
// secret written out in the file from one read with env().
type callAuthSchema struct {
	Name       *string        `hcl:"name,optional"`
	Location   *string        `hcl:"location,optional"`
	Credential hcl.Expression `hcl:"credential,optional"`

	DefRange      hcl.Range `hcl:",def_range"`
	NameRange     hcl.Range `hcl:"name,attr_value_range"`
	LocationRange hcl.Range `hcl:"location,attr_value_range"`
}

type operationSchema struct {
	Name        string  `hcl:"name,label"`
	Method      string  `hcl:"method"`
	Path        *string `hcl:"path,optional"`
	Description string  `hcl:"description,optional"`

	DefRange    hcl.Range `hcl:",def_range"`
	NameRange   hcl.Range `hcl:"name,label_range"`
	MethodRange hcl.Range `hcl:"method,attr_value_range"`
	PathRange   hcl.Range `hcl:"path,attr_value_range"`
}

// serveSchema is a serve block: a guarded reverse proxy on a port of its
// own. port and backend are optional here so that build can say what to
// write when one is missing; the access blocks are a host's.
type serveSchema struct {
	Label   string  `hcl:"label,label"`
	Name    string  `hcl:"name,optional"`
	Port    *int    `hcl:"port,optional"`
	Bind    *string `hcl:"bind,optional"`
	Backend *string `hcl:"backend,optional"`
	// RequireATProto and APIKeyAuth are read as a host's: see access.
	RequireATProto *requireATProtoSchema `hcl:"require_atproto,block"`
	APIKeyAuth     *apikeyAuthSchema     `hcl:"apikey_auth,block"`
	// RequireOAuth is read only to say that serve blocks do not take it
	// yet; suggest:"-" keeps it out of the places schemaNames offers.
	RequireOAuth []requireOAuthSchema `hcl:"require_oauth,block" suggest:"-"`

	DefRange     hcl.Range `hcl:",def_range"`
	LabelRange   hcl.Range `hcl:"label,label_range"`
	PortRange    hcl.Range `hcl:"port,attr_value_range"`
	BindRange    hcl.Range `hcl:"bind,attr_value_range"`
	BackendRange hcl.Range `hcl:"backend,attr_value_range"`
}
