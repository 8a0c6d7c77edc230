//! The environment variables session discovery reads. The CLI's list of
//! every variable (`src/env_vars.rs`) re-exports these, so a name lives in
//! one place.

/// A token (API key or session token) that takes precedence over the token
/// file: the way to authenticate in CI.
pub const TOKEN: &str = "BALENA_RELEASE_UPDATE_TOKEN";

/// Set to `1` to let a `balenarc.yml`/`resinrc.yml` in the working directory
/// choose the API or delta server while `CI` is set (otherwise refused).
pub const TRUST_CWD_SETTINGS: &str = "BALENA_RELEASE_UPDATE_TRUST_CWD_SETTINGS";

/// Reaches a registry named in image locations at another URL:
/// `host=url` pairs separated by commas, e.g.
/// `registry2.balena-cloud.com=http://127.0.0.1:5000` (a local mirror or a
/// test registry). Parsed by [`crate::registry_map`].
pub const REGISTRY_MAP: &str = "BALENA_RELEASE_UPDATE_REGISTRY_MAP";

/// The balena CLI's settings variables named in messages (any `BALENARC_<NAME>`
/// or `RESINRC_<NAME>` is read; see [`crate::settings`]).
pub const BALENARC_API_URL: &str = "BALENARC_API_URL";
/// See [`BALENARC_API_URL`].
pub const BALENARC_DELTA_URL: &str = "BALENARC_DELTA_URL";
/// See [`BALENARC_API_URL`].
pub const BALENARC_DATA_DIRECTORY: &str = "BALENARC_DATA_DIRECTORY";

/// Set by CI systems: a settings file in the working directory that
/// chooses the servers is refused.
pub const CI: &str = "CI";
