//! `viewer`, `serverInfo`, `entity`: users, teams, organisations and server features.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::app;
use super::scalars::{DateTime, Json, JsonString};
use crate::state::{EntityRecord, World};

/// `ApiKey` (the fragment's type condition must exist; no secret is ever exposed).
#[derive(SimpleObject, Clone)]
pub struct ApiKey {
    /// Id.
    pub id: ID,
    /// A non-secret label.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// `ApiKeyEdge`.
#[derive(SimpleObject, Clone)]
pub struct ApiKeyEdge {
    /// The key.
    pub node: Option<ApiKey>,
}

/// `ApiKeyConnection`.
#[derive(SimpleObject, Clone)]
pub struct ApiKeyConnection {
    /// Edges.
    pub edges: Vec<ApiKeyEdge>,
}

/// `EntityEdge`.
#[derive(SimpleObject, Clone)]
pub struct EntityEdge {
    /// The entity.
    pub node: Option<EntityObject>,
}

/// `EntityConnection`.
#[derive(SimpleObject, Clone)]
pub struct EntityConnection {
    /// Edges.
    pub edges: Vec<EntityEdge>,
}

/// `User`.
#[derive(SimpleObject, Clone)]
pub struct User {
    /// Id.
    pub id: ID,
    /// Display name.
    pub name: String,
    /// User name.
    pub username: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Admin flag.
    pub admin: Option<bool>,
    /// Feature flags (JSON text).
    pub flags: Option<JsonString>,
    /// Default entity.
    pub entity: Option<String>,
    /// Deletion time (never set).
    pub deleted_at: Option<DateTime>,
    /// API keys (labels only).
    pub api_keys: Option<ApiKeyConnection>,
    /// Teams.
    pub teams: Option<EntityConnection>,
    /// Avatar URL.
    pub photo_url: Option<String>,
    /// Account type.
    pub account_type: Option<String>,
}

/// Builds the viewer's `User`.
pub fn viewer_user(world: &World, key_count: usize) -> User {
    let v = &world.viewer;
    User {
        id: ID(v.graphql_id()),
        name: v.name.clone(),
        username: Some(v.username.clone()),
        email: Some(v.email.clone()),
        admin: Some(false),
        flags: Some(JsonString("{}".into())),
        entity: Some(v.entity.clone()),
        deleted_at: None,
        api_keys: Some(ApiKeyConnection {
            edges: (0..key_count)
                .map(|i| ApiKeyEdge {
                    node: Some(ApiKey {
                        id: ID(format!("ApiKey:{i}")),
                        name: format!("emulator-key-{i}"),
                        description: Some("key registered at emulator start".into()),
                    }),
                })
                .collect(),
        }),
        teams: Some(EntityConnection {
            edges: world
                .entities()
                .filter(|e| e.is_team)
                .map(|e| EntityEdge {
                    node: Some(EntityObject::from_record(e)),
                })
                .collect(),
        }),
        photo_url: None,
        account_type: Some("USER".into()),
    }
}

/// A run's `user` (`{name, username}`).
pub fn run_user(world: &World, username: &str) -> User {
    let mut user = viewer_user(world, 0);
    if username != world.viewer.username {
        user.username = Some(username.to_string());
        user.name = username.to_string();
        user.id = ID(format!("User:{username}"));
    }
    user
}

/// `Entity`.
#[derive(Clone, Debug)]
pub struct EntityObject {
    id: String,
    name: String,
    is_team: bool,
}

impl EntityObject {
    /// From a stored entity.
    pub fn from_record(e: &EntityRecord) -> Self {
        Self {
            id: e.graphql_id(),
            name: e.name.clone(),
            is_team: e.is_team,
        }
    }
}

#[Object(name = "Entity")]
impl EntityObject {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn is_team(&self) -> bool {
        self.is_team
    }

    async fn available(&self) -> bool {
        false
    }

    async fn read_only(&self) -> bool {
        false
    }

    async fn photo_url(&self) -> Option<String> {
        None
    }

    async fn entity_type(&self) -> &str {
        if self.is_team { "TEAM" } else { "USER" }
    }

    /// Always null: the emulator has no organisations (the SDK tolerates null).
    async fn organization(&self) -> Option<Organization> {
        None
    }

    async fn xxhash_digests_enabled(&self) -> bool {
        false
    }
}

/// `Organization` (never returned, but documents name it).
#[derive(SimpleObject, Clone)]
pub struct Organization {
    /// Id.
    pub id: ID,
    /// Name.
    pub name: String,
    /// CoreWeave id.
    pub core_weave_organization_id: Option<String>,
    /// The organisation's entity.
    pub org_entity: Option<EntityObject>,
}

/// `ServerFeature`.
#[derive(SimpleObject, Clone)]
pub struct ServerFeature {
    /// Feature name (e.g. `MARK_RUN_FILES_UPLOADED`).
    pub name: String,
    /// Enabled.
    pub is_enabled: bool,
}

/// `LocalVersionInfo`.
#[derive(SimpleObject, Clone)]
pub struct LocalVersionInfo {
    /// Out of date.
    pub out_of_date: bool,
    /// Latest version.
    pub latest_version_string: String,
    /// This instance's version.
    pub version_on_this_instance_string: String,
}

/// `ServerInfo`.
#[derive(SimpleObject, Clone)]
pub struct ServerInfo {
    /// Enabled features.
    pub features: Vec<ServerFeature>,
    /// CLI version info (null).
    pub cli_version_info: Option<Json>,
    /// Local server version info (null: not a local server).
    pub latest_local_version_info: Option<LocalVersionInfo>,
}

/// Root fields about the viewer and the server.
#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The signed-in user.
    async fn viewer(&self, ctx: &Context<'_>) -> Option<User> {
        let app = app(ctx);
        let keys = app.api_keys.read().len();
        Some(viewer_user(&app.world.read(), keys))
    }

    /// Server features.
    async fn server_info(&self, ctx: &Context<'_>) -> ServerInfo {
        let features = app(ctx)
            .features
            .read()
            .iter()
            .map(|name| ServerFeature {
                name: name.clone(),
                is_enabled: true,
            })
            .collect();
        ServerInfo {
            features,
            cli_version_info: None,
            latest_local_version_info: None,
        }
    }

    /// An entity by name (null when unknown).
    async fn entity(&self, ctx: &Context<'_>, name: Option<String>) -> Option<EntityObject> {
        let world = app(ctx).world.read();
        world
            .entity(name.as_deref()?)
            .map(EntityObject::from_record)
    }
}
