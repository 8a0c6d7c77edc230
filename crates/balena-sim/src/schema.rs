//! The balena model subset the simulator serves: resources, their typed
//! fields and reverse navigations (v7 names), and the two models built from
//! them (balenaCloud, and openBalena without `delta`).

use FieldType::{BigInteger, Boolean, DateTime, ForeignKey, Integer, Json, Text};

/// The column types the engine distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Integer,
    BigInteger,
    Text,
    DateTime,
    Boolean,
    Json,
    /// A foreign key to the named resource.
    ForeignKey(&'static str),
}

/// A column of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
}

/// A reverse navigation: `name` on this resource lists the rows of
/// `resource` whose foreign key `via` points at this row
/// (for example `release.release_image` is `release_image.is_part_of__release`).
#[derive(Debug, Clone, Copy)]
pub struct ReverseNavigation {
    pub name: &'static str,
    pub resource: &'static str,
    pub via: &'static str,
}

/// The schema of one resource. The first field is always `id`.
#[derive(Debug)]
pub struct Resource {
    pub name: &'static str,
    pub fields: &'static [Field],
    pub reverse: &'static [ReverseNavigation],
}

/// An error from a write that does not fit the schema (a programming or
/// scenario-file mistake, reported with the resource and field names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

/// The schema of a resource by name.
pub fn resource_schema(name: &str) -> Result<&'static Resource, SchemaError> {
    schema()
        .iter()
        .find(|resource| resource.name == name)
        .ok_or_else(|| SchemaError(format!("unknown resource `{name}`")))
}

/// The position of a field in its resource's rows.
pub fn field_index(resource: &Resource, name: &str) -> Result<usize, SchemaError> {
    resource
        .fields
        .iter()
        .position(|field| field.name == name)
        .ok_or_else(|| SchemaError(format!("{}: unknown field `{name}`", resource.name)))
}

/// Which API the tables are served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// balenaCloud: every resource of [`schema`], `delta` included.
    #[default]
    BalenaCloud,
    /// openBalena: the same model without the `delta` resource and the
    /// navigations to it (`/v7/delta` is then an unknown resource).
    OpenBalena,
}

impl Model {
    /// The resources served under this model.
    pub fn resources(self) -> &'static [Resource] {
        match self {
            Model::BalenaCloud => schema(),
            Model::OpenBalena => OPENBALENA,
        }
    }

    /// A served resource by name.
    pub fn resource(self, name: &str) -> Option<&'static Resource> {
        self.resources()
            .iter()
            .find(|resource| resource.name == name)
    }
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty }
}

const fn rev(name: &'static str, resource: &'static str, via: &'static str) -> ReverseNavigation {
    ReverseNavigation {
        name,
        resource,
        via,
    }
}

const APPLICATION: Resource = Resource {
    name: "application",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("app_name", Text),
        f("slug", Text),
        f("is_public", Boolean),
        f("is_host", Boolean),
        f("should_track_latest_release", Boolean),
        f("should_be_running__release", ForeignKey("release")),
    ],
    reverse: &[
        rev("owns__release", "release", "belongs_to__application"),
        rev("service", "service", "application"),
        rev("owns__device", "device", "belongs_to__application"),
        rev(
            "application_config_variable",
            "application_config_variable",
            "application",
        ),
    ],
};

const APPLICATION_CONFIG_VARIABLE: Resource = Resource {
    name: "application_config_variable",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("application", ForeignKey("application")),
        f("name", Text),
        f("value", Text),
    ],
    reverse: &[],
};

const DEVICE_CONFIG_VARIABLE: Resource = Resource {
    name: "device_config_variable",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("device", ForeignKey("device")),
        f("name", Text),
        f("value", Text),
    ],
    reverse: &[],
};

const USER: Resource = Resource {
    name: "user",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("username", Text),
    ],
    reverse: &[],
};

const SERVICE: Resource = Resource {
    name: "service",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("application", ForeignKey("application")),
        f("service_name", Text),
    ],
    reverse: &[rev("is_built_by__image", "image", "is_a_build_of__service")],
};

const RELEASE: Resource = Resource {
    name: "release",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("belongs_to__application", ForeignKey("application")),
        f("is_created_by__user", ForeignKey("user")),
        f("commit", Text),
        f("composition", Json),
        f("status", Text),
        f("source", Text),
        f("build_log", Text),
        f("is_invalidated", Boolean),
        f("start_timestamp", DateTime),
        f("update_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("phase", Text),
        f("semver", Text),
        f("semver_major", Integer),
        f("semver_minor", Integer),
        f("semver_patch", Integer),
        f("semver_prerelease", Text),
        f("semver_build", Text),
        f("variant", Text),
        f("revision", Integer),
        f("known_issue_list", Text),
        f("raw_version", Text),
        f("version", Json),
        f("is_final", Boolean),
        f("is_finalized_at__date", DateTime),
        f("note", Text),
        f("invalidation_reason", Text),
    ],
    reverse: &[
        rev("release_image", "release_image", "is_part_of__release"),
        rev(
            "should_be_running_on__application",
            "application",
            "should_be_running__release",
        ),
        rev("is_running_on__device", "device", "is_running__release"),
        rev("is_pinned_to__device", "device", "is_pinned_on__release"),
        rev(
            "should_be_running_on__device",
            "device",
            "should_be_running__release",
        ),
    ],
};

const IMAGE: Resource = Resource {
    name: "image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("build_log", Text),
        f("contract", Json),
        f("content_hash", Text),
        f("project_type", Text),
        f("status", Text),
        f("is_stored_at__image_location", Text),
        f("start_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("push_timestamp", DateTime),
        f("image_size", BigInteger),
        f("dockerfile", Text),
        f("error_message", Text),
        f("is_a_build_of__service", ForeignKey("service")),
    ],
    reverse: &[
        rev("release_image", "release_image", "image"),
        rev("is_source_of__delta", "delta", "originates_from__image"),
        rev("is_produced_by__delta", "delta", "produces__image"),
    ],
};

const RELEASE_IMAGE: Resource = Resource {
    name: "release_image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("image", ForeignKey("image")),
        f("is_part_of__release", ForeignKey("release")),
    ],
    reverse: &[],
};

const DELTA: Resource = Resource {
    name: "delta",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("originates_from__image", ForeignKey("image")),
        f("produces__image", ForeignKey("image")),
        f("version", Integer),
        f("status", Text),
        f("is_stored_at__location", Text),
        f("size", BigInteger),
        f("start_timestamp", DateTime),
        f("update_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("error_message", Text),
    ],
    reverse: &[],
};

const DEVICE: Resource = Resource {
    name: "device",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("uuid", Text),
        f("device_name", Text),
        f("belongs_to__application", ForeignKey("application")),
        f("is_running__release", ForeignKey("release")),
        f("is_pinned_on__release", ForeignKey("release")),
        f("should_be_running__release", ForeignKey("release")),
        f("is_online", Boolean),
        f("api_heartbeat_state", Text),
    ],
    reverse: &[rev(
        "device_config_variable",
        "device_config_variable",
        "device",
    )],
};

/// `image` on openBalena: no navigations to `delta`.
const IMAGE_WITHOUT_DELTA: Resource = Resource {
    name: "image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("build_log", Text),
        f("contract", Json),
        f("content_hash", Text),
        f("project_type", Text),
        f("status", Text),
        f("is_stored_at__image_location", Text),
        f("start_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("push_timestamp", DateTime),
        f("image_size", BigInteger),
        f("dockerfile", Text),
        f("error_message", Text),
        f("is_a_build_of__service", ForeignKey("service")),
    ],
    reverse: &[rev("release_image", "release_image", "image")],
};

/// The balena model subset the simulator stores (v7 field names).
pub fn schema() -> &'static [Resource] {
    static SCHEMA: &[Resource] = &[
        APPLICATION,
        USER,
        SERVICE,
        RELEASE,
        IMAGE,
        RELEASE_IMAGE,
        DELTA,
        DEVICE,
        APPLICATION_CONFIG_VARIABLE,
        DEVICE_CONFIG_VARIABLE,
    ];
    SCHEMA
}

static OPENBALENA: &[Resource] = &[
    APPLICATION,
    USER,
    SERVICE,
    RELEASE,
    IMAGE_WITHOUT_DELTA,
    RELEASE_IMAGE,
    DEVICE,
    APPLICATION_CONFIG_VARIABLE,
    DEVICE_CONFIG_VARIABLE,
];
