//! The supervision tree of a node (ractor).
//!
//! ```text
//! NodeSupervisor
//! ├── Supervisor(devices)   DeviceActor tasks, one per socket        policy: never restarted
//! ├── Supervisor(sessions)  SessionActor tasks, one per live session  policy: restarted
//! ├── Supervisor(groups)    GroupActor (ractor), one per active group policy: restarted
//! └── Supervisor(control)   ControlActor (ractor)                    policy: restarted
//! ```
//!
//! Two kinds of children:
//! - **ractor actors** (`GroupActor`, `ControlActor`) are spawned linked to their area's
//!   supervisor with a [`Restart`] recipe. A panic or error in one of their handlers reaches the
//!   supervisor as `ActorFailed`; the supervisor counts it and runs the recipe, which starts a
//!   fresh actor that reloads its state from the store and takes the old one's place.
//! - **per-connection tasks** (`DeviceActor`, `SessionActor`) are plain tokio tasks with a
//!   bounded mailbox, not ractor actors: a ractor actor costs about 7.5 KB idle on this machine
//!   (benches/README.md, "Actor frameworks"), which alone would break the 8 KB per idle
//!   connection target. Their handlers run under `catch_unwind`; a panic is reported to the
//!   area's supervisor ([`Supervisor::child_failed`]), which counts it and decides: a device
//!   task is never restarted (its socket closes with 1011 and the client reconnects and drains
//!   its queue, which holds every accepted envelope); a session task is restarted and reloads
//!   its session from the store (a revoked session then closes its socket).
//!
//! A failure never reaches a sibling: a supervisor handles its children's failures itself and
//! does not fail in turn. More than [`MAX_RESTARTS`] restarts of one child within
//! [`RESTART_WINDOW`] stop restarting it (it is left stopped and the log says so).
//!
//! Every failure and restart is counted per area in [`Metrics`] (`/metrics`:
//! `hush_actor_failures_total`, `hush_actor_restarts_total`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::metrics::Metrics;

/// Restarts of one child allowed within [`RESTART_WINDOW`].
pub const MAX_RESTARTS: usize = 5;
/// The window of [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);
/// How long a task waits for its supervisor's decision before it stops.
const DECISION_TIMEOUT: Duration = Duration::from_secs(5);

/// The areas of the tree, one supervisor each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    /// Device connections.
    Devices,
    /// Live sessions.
    Sessions,
    /// Active groups.
    Groups,
    /// Admin and account commands.
    Control,
}

impl Area {
    /// Every area, in the order of [`Metrics::actor_failures`].
    pub const ALL: [Area; 4] = [Area::Devices, Area::Sessions, Area::Groups, Area::Control];

    /// The label used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Area::Devices => "devices",
            Area::Sessions => "sessions",
            Area::Groups => "groups",
            Area::Control => "control",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether a failed child of this area is restarted.
    pub fn restarts(self) -> bool {
        !matches!(self, Area::Devices)
    }
}

/// What a supervisor decides for a failed task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start the task again (it reloads its state from the store).
    Restart,
    /// Leave it stopped.
    Stop,
}

/// A boxed future that starts a replacement actor.
pub type Restarting = Pin<Box<dyn Future<Output = Option<(ActorCell, Box<dyn Restart>)>> + Send>>;

/// How to start a failed ractor child again: spawn a fresh actor linked to `supervisor` that
/// reloads its state, put it where callers find it, and return it with its own recipe.
pub trait Restart: Send + Sync + 'static {
    /// Starts the replacement; `None` if it could not start (it is left stopped).
    fn restart(&self, supervisor: ActorCell) -> Restarting;
    /// A short name for the logs (`group default/g-1`).
    fn describe(&self) -> String;
}

/// Messages of an area supervisor.
pub enum SupervisorMsg {
    /// Watch a ractor child already linked to this supervisor; restart it with `recipe`.
    Watch(ActorId, Box<dyn Restart>),
    /// A task child (device, session) failed: count it and decide.
    TaskFailed {
        /// Which task (`device default/alice/1`).
        id: String,
        /// The panic message.
        reason: String,
        /// The decision.
        reply: RpcReplyPort<Decision>,
    },
}

/// One area supervisor's state.
pub struct AreaState {
    area: Area,
    metrics: Arc<Metrics>,
    recipes: HashMap<ActorId, Box<dyn Restart>>,
    history: HashMap<String, Vec<Instant>>,
}

impl AreaState {
    /// Records one restart of `id`; false past [`MAX_RESTARTS`] in [`RESTART_WINDOW`].
    fn allow_restart(&mut self, id: &str) -> bool {
        let now = Instant::now();
        if self.history.len() > 10_000 {
            self.history.retain(|_, v| v.last().is_some_and(|t| now - *t < RESTART_WINDOW));
        }
        let h = self.history.entry(id.to_owned()).or_default();
        h.retain(|t| now - *t < RESTART_WINDOW);
        if h.len() >= MAX_RESTARTS {
            return false;
        }
        h.push(now);
        true
    }

    fn failed(&self) {
        Metrics::add(&self.metrics.actor_failures[self.area.index()], 1);
    }

    fn restarted(&self) {
        Metrics::add(&self.metrics.actor_restarts[self.area.index()], 1);
    }
}

/// The supervisor of one area.
pub struct AreaSupervisor;

impl Actor for AreaSupervisor {
    type Msg = SupervisorMsg;
    type State = AreaState;
    type Arguments = (Area, Arc<Metrics>);

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        (area, metrics): (Area, Arc<Metrics>),
    ) -> Result<AreaState, ActorProcessingErr> {
        Ok(AreaState { area, metrics, recipes: HashMap::new(), history: HashMap::new() })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut AreaState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Watch(id, recipe) => {
                state.recipes.insert(id, recipe);
            }
            SupervisorMsg::TaskFailed { id, reason, reply } => {
                state.failed();
                let decision = if state.area.restarts() && state.allow_restart(&id) {
                    state.restarted();
                    Decision::Restart
                } else {
                    Decision::Stop
                };
                tracing::error!(area = state.area.name(), child = %id, %reason, ?decision, "actor failed");
                let _ = reply.send(decision);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut AreaState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                state.failed();
                let Some(recipe) = state.recipes.remove(&cell.get_id()) else {
                    tracing::error!(area = state.area.name(), error = %err, "unwatched actor failed");
                    return Ok(());
                };
                let what = recipe.describe();
                if !state.allow_restart(&what) {
                    tracing::error!(area = state.area.name(), child = %what, error = %err, "actor failed too often; left stopped");
                    return Ok(());
                }
                tracing::error!(area = state.area.name(), child = %what, error = %err, "actor failed; restarting");
                if let Some((new, recipe)) = recipe.restart(myself.get_cell()).await {
                    state.restarted();
                    state.recipes.insert(new.get_id(), recipe);
                } else {
                    tracing::error!(area = state.area.name(), child = %what, "actor not restarted");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.recipes.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

/// A handle on one area supervisor.
#[derive(Clone)]
pub struct Supervisor {
    area: Area,
    actor: ActorRef<SupervisorMsg>,
}

impl Supervisor {
    /// Its area.
    pub fn area(&self) -> Area {
        self.area
    }

    /// The supervisor's cell, to link children to.
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Watches a child linked to this supervisor: on failure it is restarted with `recipe`.
    pub fn watch(&self, child: &ActorCell, recipe: Box<dyn Restart>) {
        let _ = self.actor.cast(SupervisorMsg::Watch(child.get_id(), recipe));
    }

    /// A task child failed: the supervisor counts it and decides (stop if it cannot be asked).
    pub async fn child_failed(&self, id: String, reason: String) -> Decision {
        let asked = self
            .actor
            .call(|reply| SupervisorMsg::TaskFailed { id, reason, reply }, Some(DECISION_TIMEOUT))
            .await;
        match asked {
            Ok(ractor::rpc::CallResult::Success(d)) => d,
            _ => Decision::Stop,
        }
    }
}

/// Messages of the node supervisor (none: it only supervises).
pub enum NodeMsg {}

/// The root of the tree: starts the area supervisors and restarts one that fails (it keeps no
/// state of its children, so a restarted area supervisor only misses the recipes of children
/// started before; those are then left stopped if they fail).
pub struct NodeSupervisor;

/// The node supervisor's state: where the area supervisors are.
pub struct NodeState {
    tree: Tree,
    metrics: Arc<Metrics>,
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = (Tree, Arc<Metrics>);

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        (tree, metrics): (Tree, Arc<Metrics>),
    ) -> Result<NodeState, ActorProcessingErr> {
        for area in Area::ALL {
            let (actor, _) =
                Actor::spawn_linked(None, AreaSupervisor, (area, metrics.clone()), myself.get_cell()).await?;
            tree.set(Supervisor { area, actor });
        }
        Ok(NodeState { tree, metrics })
    }

    async fn handle(
        &self,
        _: ActorRef<NodeMsg>,
        msg: NodeMsg,
        _: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {}
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let Some(area) = state.tree.area_of(&cell) else { return Ok(()) };
            tracing::error!(area = area.name(), error = %err, "area supervisor failed; restarting");
            let (actor, _) =
                Actor::spawn_linked(None, AreaSupervisor, (area, state.metrics.clone()), myself.get_cell())
                    .await?;
            state.tree.set(Supervisor { area, actor });
        }
        Ok(())
    }
}

/// Where the area supervisors are (shared; updated when one is restarted).
#[derive(Clone, Default)]
pub struct Tree {
    areas: Arc<RwLock<Vec<Supervisor>>>,
    root: Arc<RwLock<Option<ActorRef<NodeMsg>>>>,
}

impl Tree {
    /// Starts the tree (once; the supervisors run on the current tokio runtime).
    pub async fn start(&self, metrics: Arc<Metrics>) -> Result<(), ractor::SpawnErr> {
        let (root, _) = Actor::spawn(None, NodeSupervisor, (self.clone(), metrics)).await?;
        *self.root.write().unwrap_or_else(|e| e.into_inner()) = Some(root);
        Ok(())
    }

    fn set(&self, s: Supervisor) {
        let mut areas = self.areas.write().unwrap_or_else(|e| e.into_inner());
        areas.retain(|a| a.area != s.area);
        areas.push(s);
    }

    fn area_of(&self, cell: &ActorCell) -> Option<Area> {
        let areas = self.areas.read().unwrap_or_else(|e| e.into_inner());
        areas.iter().find(|s| s.actor.get_id() == cell.get_id()).map(|s| s.area)
    }

    /// The supervisor of `area` (`None` before [`Tree::start`] or after [`Tree::stop`]).
    pub fn get(&self, area: Area) -> Option<Supervisor> {
        let areas = self.areas.read().unwrap_or_else(|e| e.into_inner());
        areas.iter().find(|s| s.area == area).cloned()
    }

    /// Stops the whole tree (children first, by ractor's linking).
    pub fn stop(&self) {
        if let Some(root) = self.root.write().unwrap_or_else(|e| e.into_inner()).take() {
            root.stop(Some("node stopping".into()));
        }
        self.areas.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The text of a caught panic.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
