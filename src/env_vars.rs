//! Every environment variable the tool reads, in one place, so the README's
//! list and the code cannot drift apart. Those of the balena CLI's session
//! (the token, balenarc variables, `CI`, the registry map) are defined in
//! `balena-session` and re-exported here.

// All of them, so this stays the one list to read (not all are named in
// the command's own messages).
#[allow(unused_imports)]
pub use balena_session::env_vars::{
    BALENARC_API_URL, BALENARC_DATA_DIRECTORY, BALENARC_DELTA_URL, CI, REGISTRY_MAP, TOKEN,
    TRUST_CWD_SETTINGS,
};

/// Set to `1` to allow plain `http://` to hosts other than loopback.
pub const ALLOW_HTTP: &str = "BALENA_RELEASE_UPDATE_ALLOW_HTTP";

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

/// Disables colour (<https://no-color.org>) under `--color auto`.
pub const NO_COLOR: &str = "NO_COLOR";

/// Colour even when stderr is not a terminal, under `--color auto` (not
/// `0`; NO_COLOR wins). <https://bixense.com/clicolors/>
pub const CLICOLOR_FORCE: &str = "CLICOLOR_FORCE";

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
