//! Every environment variable the tool reads, in one place, so the README's
//! list and the code cannot drift apart.

/// A token (API key or session token) that takes precedence over the token
/// file: the way to authenticate in CI.
pub const TOKEN: &str = "BALENA_RELEASE_UPDATE_TOKEN";

/// Set to `1` to allow plain `http://` to hosts other than loopback.
pub const ALLOW_HTTP: &str = "BALENA_RELEASE_UPDATE_ALLOW_HTTP";

/// Set to `1` to let a `balenarc.yml`/`resinrc.yml` in the working directory
/// choose the API or delta server while `CI` is set (otherwise refused).
pub const TRUST_CWD_SETTINGS: &str = "BALENA_RELEASE_UPDATE_TRUST_CWD_SETTINGS";

/// Reaches a registry named in image locations at another URL:
/// `host=url` pairs separated by commas, e.g.
/// `registry2.balena-cloud.com=http://127.0.0.1:5000` (a local mirror or a
/// test registry).
pub const REGISTRY_MAP: &str = "BALENA_RELEASE_UPDATE_REGISTRY_MAP";

/// Overrides the first poll interval while waiting (e.g. `200ms`); for tests
/// and demos against the simulator. Not shown in `--help`.
pub const POLL_INTERVAL: &str = "BALENA_RELEASE_UPDATE_POLL_INTERVAL";

/// Overrides the first retry pause after a transient failure (e.g. `50ms`);
/// for tests against the simulator's fault injection. Not shown in `--help`.
pub const RETRY_INTERVAL: &str = "BALENA_RELEASE_UPDATE_RETRY_INTERVAL";

/// Overrides the 120 s bound on describe and `--prepare` (e.g. `500ms`); for
/// tests of a stalled server. Not shown in `--help`.
pub const RUN_LIMIT: &str = "BALENA_RELEASE_UPDATE_RUN_LIMIT";

/// Overrides the 10 s minimum gap between plain status lines (written when
/// stderr is not a terminal, or `TERM=dumb`; e.g. `200ms`); for tests. The
/// state is repeated after six gaps without a change. Not shown in `--help`.
pub const STATUS_INTERVAL: &str = "BALENA_RELEASE_UPDATE_STATUS_INTERVAL";

/// The balena CLI's settings variables named in messages (any `BALENARC_<NAME>`
/// or `RESINRC_<NAME>` is read; see `settings`).
pub const BALENARC_API_URL: &str = "BALENARC_API_URL";
pub const BALENARC_DELTA_URL: &str = "BALENARC_DELTA_URL";
pub const BALENARC_DATA_DIRECTORY: &str = "BALENARC_DATA_DIRECTORY";

/// Disables colour (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Set by CI systems: no live progress.
pub const CI: &str = "CI";
/// The width tables are laid out for, as shells and terminals set it;
/// overrides the terminal's own width.
pub const COLUMNS: &str = "COLUMNS";

/// `dumb`: a terminal that gets plain status lines, no cursor moves and no
/// bold or colour.
pub const TERM: &str = "TERM";

/// Proxies for remote hosts, read by the HTTP client (upper- or lower-case;
/// loopback hosts never use one). Checked here so that a malformed value is
/// an error, not a silent direct connection.
pub const PROXIES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];
