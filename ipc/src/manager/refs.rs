//! `refs`: this process's references to manager objects, as Python's `BaseProxy` incref/decref.
//!
//! A process counts its proxies of each object itself and tells the server only when the count
//! goes from 0 to 1 (`Hold`) or back to 0 (`Release`), over one connection per manager of its
//! own (a [`Link`], not the per-thread connections, so a thread that exits drops no reference of
//! a proxy it passed to another thread). The server keeps references per connection: when a
//! process dies, however it died, its link closes and everything it held is released.
//!
//! Proxies leaving the process: a serialised proxy carries a *ticket*, a reference the server
//! holds for it on this process's link until the receiver redeems it with its own `Hold` (or
//! until a grace period after this process's link closes), so the sender may drop its proxy at
//! once, and may even exit. A proxy stored into another object of the same manager carries no
//! ticket: the storing request names it, and the object it was stored into holds it for as long
//! as that object lives. A forked child gets a link of its own opened by the parent just before
//! the fork ([`prepare_fork`]), on which every object the parent held is held again, so nothing
//! the child inherited can be freed under it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::process::Pid;

use super::client::{Endpoint, Link};
use super::error::ManagerError;
use super::protocol::{ObjectId, ObjectSpec, Request, Response, TicketId};

/// One manager's references held by this process.
#[derive(Debug, Default)]
struct EndpointRefs {
    link: Option<Link>,
    /// Live proxies per object, in this process.
    counts: HashMap<ObjectId, u64>,
}

#[derive(Debug)]
struct Table {
    /// The process the links belong to: a child forked other than through `Process::fork`
    /// notices it is not that process and takes its own references (see [`Table::own`]).
    pid: Pid,
    endpoints: HashMap<Endpoint, EndpointRefs>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

type Guard = MutexGuard<'static, Option<Table>>;

fn table() -> Guard {
    // Every edit of the table is one step: a panic elsewhere leaves it consistent.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The table of this process, made consistent first if this process was forked without
/// [`prepare_fork`].
fn own(guard: &mut Guard) -> &mut Table {
    let table = guard.get_or_insert_with(|| Table {
        pid: Pid::this(),
        endpoints: HashMap::new(),
    });
    if table.pid != Pid::this() {
        // Forked by other means than `Process::fork`: the links are the parent's. Hold again,
        // on links of our own, what our inherited proxies stand for. The parent may have
        // released an object in the meantime; then that proxy reports the object gone.
        table.pid = Pid::this();
        for (endpoint, refs) in &mut table.endpoints {
            refs.link = None;
            if !refs.counts.is_empty() {
                refs.link = hold_all(endpoint, &refs.counts).ok();
            }
        }
    }
    table
}

fn ids(counts: &HashMap<ObjectId, u64>) -> Vec<ObjectId> {
    counts.keys().copied().collect()
}

/// A new link on which every object of `counts` is held.
fn hold_all(endpoint: &Endpoint, counts: &HashMap<ObjectId, u64>) -> Result<Link, ManagerError> {
    let mut link = Link::open(endpoint)?;
    link.call(&endpoint.address, &Request::HoldAll { ids: ids(counts) })?;
    Ok(link)
}

/// Sends `request` on `endpoint`'s link (opened if need be); a broken link is dropped, which
/// makes the server release what it held, as for a dead process.
fn call(
    refs: &mut EndpointRefs,
    endpoint: &Endpoint,
    request: &Request,
) -> Result<Response, ManagerError> {
    let link = match &mut refs.link {
        Some(link) => link,
        None => refs.link.insert(Link::open(endpoint)?),
    };
    let outcome = link.call(&endpoint.address, request);
    if let Err(e) = &outcome {
        if !matches!(e, ManagerError::Remote(_)) {
            refs.link = None;
        }
    }
    outcome
}

fn unexpected(what: &str, response: Response) -> ManagerError {
    ManagerError::Codec {
        action: "interpret",
        what: "the server's answer",
        reason: format!("unexpected answer to {what}: {response:?}"),
    }
}

/// Creates an object (or finds a named one) and holds it: the caller owns one reference.
pub(crate) fn create(
    endpoint: &Endpoint,
    spec: ObjectSpec,
    name: Option<String>,
) -> Result<ObjectId, ManagerError> {
    let mut guard = table();
    let refs = own(&mut guard)
        .endpoints
        .entry(endpoint.clone())
        .or_default();
    match call(refs, endpoint, &Request::Create { spec, name })? {
        Response::Created(id) => {
            *refs.counts.entry(id).or_insert(0) += 1;
            Ok(id)
        }
        other => Err(unexpected("create", other)),
    }
}

/// One more reference to `id`, for a proxy arriving in this process; redeems its `ticket`.
pub(crate) fn acquire(
    endpoint: &Endpoint,
    id: ObjectId,
    ticket: Option<TicketId>,
) -> Result<(), ManagerError> {
    let mut guard = table();
    let refs = own(&mut guard)
        .endpoints
        .entry(endpoint.clone())
        .or_default();
    let count = refs.counts.get(&id).copied().unwrap_or(0);
    if count == 0 || ticket.is_some() {
        match call(refs, endpoint, &Request::Hold { id, ticket })? {
            Response::Done => {}
            other => return Err(unexpected("hold", other)),
        }
    }
    refs.counts.insert(id, count + 1);
    Ok(())
}

/// One more reference to `id`, which this process already holds (a proxy cloned).
pub(crate) fn add(endpoint: &Endpoint, id: ObjectId) {
    let mut guard = table();
    let refs = own(&mut guard)
        .endpoints
        .entry(endpoint.clone())
        .or_default();
    *refs.counts.entry(id).or_insert(0) += 1;
}

/// One reference fewer to `id`; the last one tells the server, which frees the object if no
/// other process, ticket, name or object holds it. Errors are not reported: a server that is
/// gone has freed everything already, and a broken link releases everything it held.
pub(crate) fn release(endpoint: &Endpoint, id: ObjectId) {
    let mut guard = table();
    let Some(refs) = own(&mut guard).endpoints.get_mut(endpoint) else {
        return;
    };
    match refs.counts.get_mut(&id) {
        Some(count) if *count > 1 => *count -= 1,
        Some(_) => {
            refs.counts.remove(&id);
            if refs.link.is_some() {
                let _ = call(refs, endpoint, &Request::Release { id });
            }
        }
        None => {}
    }
}

/// A ticket on `id` for a proxy leaving this process.
pub(crate) fn ticket(endpoint: &Endpoint, id: ObjectId) -> Result<TicketId, ManagerError> {
    let mut guard = table();
    let refs = own(&mut guard)
        .endpoints
        .entry(endpoint.clone())
        .or_default();
    match call(refs, endpoint, &Request::Ticket { id })? {
        Response::Ticket(ticket) => Ok(ticket),
        other => Err(unexpected("ticket", other)),
    }
}

/// Forgets `endpoint`'s references and closes its link: its server was stopped.
pub(crate) fn forget(endpoint: &Endpoint) {
    let mut guard = table();
    if guard.is_some() {
        own(&mut guard).endpoints.remove(endpoint);
    }
}

/// The references a child about to be forked will own: taken in the parent before the fork,
/// handed over in the child with [`ForkRefs::in_child`], and dropped in the parent after it.
/// Holding the table's mutex across the fork also means the child never inherits it locked by
/// another thread.
#[derive(Debug)]
pub(crate) struct ForkRefs {
    guard: Guard,
    links: Vec<(Endpoint, Link)>,
}

/// Opens, for each manager this process holds objects of, a link on which all of them are held
/// again: the child's, from the moment it exists. A manager that cannot be reached is skipped
/// (its proxies are unusable anyway).
pub(crate) fn prepare_fork() -> ForkRefs {
    let mut guard = table();
    let mut links = Vec::new();
    if guard.is_some() {
        let table = own(&mut guard);
        for (endpoint, refs) in &table.endpoints {
            if refs.counts.is_empty() {
                continue;
            }
            if let Ok(link) = hold_all(endpoint, &refs.counts) {
                links.push((endpoint.clone(), link));
            }
        }
    }
    ForkRefs { guard, links }
}

impl ForkRefs {
    /// In the forked child: the links opened for it replace the parent's.
    pub(crate) fn in_child(self) {
        let ForkRefs { mut guard, links } = self;
        let Some(table) = guard.as_mut() else {
            return;
        };
        table.pid = Pid::this();
        for refs in table.endpoints.values_mut() {
            refs.link = None;
        }
        for (endpoint, mut link) in links {
            link.adopt();
            if let Some(refs) = table.endpoints.get_mut(&endpoint) {
                refs.link = Some(link);
            }
        }
    }
}
