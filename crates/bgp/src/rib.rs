//! Routing information bases: the desired export set, Adj-RIB-Out per peer
//! (what the peer has been sent, diffed against the export set so a change
//! sends only updates and withdrawals), Adj-RIB-In per peer (what it sent
//! us) and the Loc-RIB (best path per RD + prefix over all peers).
//!
//! Pure data structures: no I/O, no clock.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::ExportError;
use crate::route::{Family, ImportedRoute, RouteKey, VpnRoute};

/// The routes Weft wants advertised, by key. Shared by all peers.
pub type ExportSet = BTreeMap<RouteKey, Arc<VpnRoute>>;

/// Validates routes and indexes them by key; for duplicate keys the last
/// route wins, as a later assignment would.
pub fn build_export_set(routes: Vec<VpnRoute>) -> Result<ExportSet, ExportError> {
    let mut set = ExportSet::new();
    for r in routes {
        let key = r.key()?;
        set.insert(key, Arc::new(r));
    }
    Ok(set)
}

/// What must be sent to bring a peer from its Adj-RIB-Out to the export set.
#[derive(Debug, Default, Clone)]
pub struct RibDiff {
    /// Routes to announce (new or changed).
    pub announce: Vec<Arc<VpnRoute>>,
    /// Keys to withdraw.
    pub withdraw: Vec<RouteKey>,
}

impl RibDiff {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// Routes advertised to one peer.
#[derive(Debug, Default, Clone)]
pub struct AdjRibOut {
    sent: HashMap<RouteKey, Arc<VpnRoute>>,
}

impl AdjRibOut {
    /// Computes what to send so the peer holds exactly `desired` (in the
    /// negotiated `families`). Unchanged routes (same `Arc` or equal value)
    /// are not resent.
    pub fn diff(&self, desired: &ExportSet, families: &[Family]) -> RibDiff {
        let mut d = RibDiff::default();
        for (key, route) in desired {
            if !families.contains(&key.nlri.family()) {
                continue;
            }
            match self.sent.get(key) {
                Some(old) if Arc::ptr_eq(old, route) || **old == **route => {}
                _ => d.announce.push(route.clone()),
            }
        }
        for key in self.sent.keys() {
            if !desired.contains_key(key) {
                d.withdraw.push(*key);
            }
        }
        d.withdraw.sort();
        d
    }

    /// Records that a diff has been sent.
    pub fn apply(&mut self, d: &RibDiff) {
        for k in &d.withdraw {
            self.sent.remove(k);
        }
        for r in &d.announce {
            if let Ok(k) = r.key() {
                self.sent.insert(k, r.clone());
            }
        }
    }

    /// The routes of one family, to resend on ROUTE-REFRESH.
    pub fn routes(&self, family: Family) -> Vec<Arc<VpnRoute>> {
        let mut v: Vec<_> = self
            .sent
            .iter()
            .filter(|(k, _)| k.nlri.family() == family)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort_by_key(|r| r.key().ok());
        v
    }

    /// Forgets everything (the session went down).
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// Number of routes advertised.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Nothing advertised.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

/// A change to the routes learned from one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RibChange {
    /// A route was learned or replaced (also when it became stale).
    Learned(Arc<ImportedRoute>),
    /// A route was withdrawn (or swept as stale).
    Withdrawn(RouteKey),
}

/// Routes learned from one peer.
#[derive(Debug, Default, Clone)]
pub struct AdjRibIn {
    routes: HashMap<RouteKey, Arc<ImportedRoute>>,
}

impl AdjRibIn {
    /// Adds or replaces a route; returns the change, or `None` when the
    /// same route was already held (a duplicate announcement).
    pub fn learn(&mut self, key: RouteKey, route: ImportedRoute) -> Option<RibChange> {
        if self.routes.get(&key).is_some_and(|old| **old == route) {
            return None;
        }
        let route = Arc::new(route);
        self.routes.insert(key, route.clone());
        Some(RibChange::Learned(route))
    }

    /// Removes a route; returns the change if it was held.
    pub fn withdraw(&mut self, key: &RouteKey) -> Option<RibChange> {
        self.routes.remove(key).map(|_| RibChange::Withdrawn(*key))
    }

    /// Marks every route stale (the peer is restarting gracefully).
    pub fn mark_stale(&mut self) -> Vec<RibChange> {
        let mut out = Vec::new();
        for r in self.routes.values_mut() {
            if !r.stale {
                let mut s = (**r).clone();
                s.stale = true;
                *r = Arc::new(s);
                out.push(RibChange::Learned(r.clone()));
            }
        }
        out
    }

    /// Removes stale routes of `family` (all families if `None`).
    pub fn sweep_stale(&mut self, family: Option<Family>) -> Vec<RibChange> {
        let keys: Vec<RouteKey> = self
            .routes
            .iter()
            .filter(|(k, r)| r.stale && family.is_none_or(|f| k.nlri.family() == f))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter().filter_map(|k| self.withdraw(&k)).collect()
    }

    /// Removes every route of a family.
    pub fn remove_family(&mut self, family: Family) -> Vec<RibChange> {
        let keys: Vec<RouteKey> = self
            .routes
            .keys()
            .filter(|k| k.nlri.family() == family)
            .copied()
            .collect();
        keys.iter().filter_map(|k| self.withdraw(k)).collect()
    }

    /// Removes every route.
    pub fn clear(&mut self) -> Vec<RibChange> {
        let out = self
            .routes
            .keys()
            .map(|k| RibChange::Withdrawn(*k))
            .collect();
        self.routes.clear();
        out
    }

    /// Number of routes held.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// No route held.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Number of stale routes held.
    pub fn stale_count(&self) -> usize {
        self.routes.values().filter(|r| r.stale).count()
    }

    /// The route held for a key.
    pub fn get(&self, key: &RouteKey) -> Option<&Arc<ImportedRoute>> {
        self.routes.get(key)
    }
}

/// Best path over all peers for each RD + NLRI.
#[derive(Debug, Clone)]
pub struct LocRib {
    local_as: u32,
    paths: BTreeMap<RouteKey, Vec<Arc<ImportedRoute>>>,
}

impl LocRib {
    /// An empty Loc-RIB for a speaker in `local_as` (used to prefer eBGP).
    pub fn new(local_as: u32) -> Self {
        Self {
            local_as,
            paths: BTreeMap::new(),
        }
    }

    /// Applies a change from `peer`; returns true if the best path of the
    /// key changed.
    pub fn apply(&mut self, peer: IpAddr, change: &RibChange) -> bool {
        match change {
            RibChange::Learned(r) => {
                let key = r.key();
                let paths = self.paths.entry(key).or_default();
                let old_best = paths.first().cloned();
                paths.retain(|p| p.peer != peer);
                paths.push(r.clone());
                let local_as = self.local_as;
                paths.sort_by(|a, b| compare(local_as, a, b));
                old_best.as_ref() != paths.first()
            }
            RibChange::Withdrawn(key) => {
                let Some(paths) = self.paths.get_mut(key) else {
                    return false;
                };
                let old_best = paths.first().cloned();
                paths.retain(|p| p.peer != peer);
                let changed = old_best.as_ref() != paths.first();
                if paths.is_empty() {
                    self.paths.remove(key);
                }
                changed
            }
        }
    }

    /// Removes every path learned from `peer`.
    pub fn remove_peer(&mut self, peer: IpAddr) -> bool {
        let mut changed = false;
        self.paths.retain(|_, paths| {
            let before = paths.len();
            let first_was_peer = paths.first().is_some_and(|p| p.peer == peer);
            paths.retain(|p| p.peer != peer);
            changed |= before != paths.len() && first_was_peer;
            !paths.is_empty()
        });
        changed
    }

    /// The best path of every key, in key order.
    pub fn best(&self) -> Vec<Arc<ImportedRoute>> {
        self.paths
            .values()
            .filter_map(|p| p.first().cloned())
            .collect()
    }

    /// All paths of one key, best first.
    pub fn paths(&self, key: &RouteKey) -> &[Arc<ImportedRoute>] {
        self.paths.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of keys with at least one path.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// No route at all.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Decision process (RFC 4271 section 9.1.2.2, reduced to what a route
/// server for VRFs needs): fresh over stale, higher LOCAL_PREF, shorter
/// AS_PATH, lower MED, eBGP over iBGP, lower router id, lower address.
fn compare(local_as: u32, a: &ImportedRoute, b: &ImportedRoute) -> Ordering {
    a.stale
        .cmp(&b.stale)
        .then_with(|| {
            b.route
                .local_pref
                .unwrap_or(100)
                .cmp(&a.route.local_pref.unwrap_or(100))
        })
        .then_with(|| a.as_path.len().cmp(&b.as_path.len()))
        .then_with(|| a.route.med.unwrap_or(0).cmp(&b.route.med.unwrap_or(0)))
        .then_with(|| (a.peer_as == local_as).cmp(&(b.peer_as == local_as)))
        .then_with(|| a.peer_router_id.cmp(&b.peer_router_id))
        .then_with(|| a.peer.cmp(&b.peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteDistinguisher;
    use std::net::Ipv4Addr;

    fn route(prefix: &str, label: u32) -> VpnRoute {
        VpnRoute::vpnv4(
            "65000:1".parse::<RouteDistinguisher>().unwrap(),
            prefix.parse().unwrap(),
            label,
            "192.0.2.10".parse().unwrap(),
            vec!["65000:1".parse().unwrap()],
        )
    }

    #[test]
    fn adj_rib_out_diff_sends_only_changes() {
        let all = FAMS;
        let set1 =
            build_export_set(vec![route("10.0.0.1/32", 1), route("10.0.0.2/32", 2)]).unwrap();
        let mut out = AdjRibOut::default();
        let d = out.diff(&set1, &all);
        assert_eq!((d.announce.len(), d.withdraw.len()), (2, 0));
        out.apply(&d);
        assert!(out.diff(&set1, &all).is_empty());
        // Same values in new Arcs: still nothing to send.
        let set1b =
            build_export_set(vec![route("10.0.0.1/32", 1), route("10.0.0.2/32", 2)]).unwrap();
        assert!(out.diff(&set1b, &all).is_empty());
        // One changed, one removed, one added.
        let set2 =
            build_export_set(vec![route("10.0.0.1/32", 9), route("10.0.0.3/32", 3)]).unwrap();
        let d = out.diff(&set2, &all);
        let mut ann: Vec<_> = d.announce.iter().map(|r| r.label_or_vni).collect();
        ann.sort();
        assert_eq!(ann, vec![3, 9]);
        assert_eq!(d.withdraw, vec![route("10.0.0.2/32", 0).key().unwrap()]);
        out.apply(&d);
        assert_eq!(out.len(), 2);
        // Families not negotiated are neither announced nor counted.
        assert!(AdjRibOut::default().diff(&set2, &[Family::Evpn]).is_empty());
    }

    const FAMS: [Family; 2] = [Family::Vpnv4, Family::Evpn];

    fn imported(peer: [u8; 4], lp: Option<u32>, path: Vec<u32>) -> Arc<ImportedRoute> {
        let mut r = route("10.1.0.0/24", 5);
        r.local_pref = lp;
        Arc::new(ImportedRoute {
            route: r,
            peer: IpAddr::V4(Ipv4Addr::from(peer)),
            peer_as: 65001,
            peer_router_id: Ipv4Addr::from(peer),
            as_path: path,
            stale: false,
        })
    }

    #[test]
    fn loc_rib_picks_best_and_falls_back() {
        let mut rib = LocRib::new(65000);
        let a = imported([192, 0, 2, 1], None, vec![65001, 65002]);
        let b = imported([192, 0, 2, 2], None, vec![65001]);
        assert!(rib.apply(a.route_peer(), &RibChange::Learned(a.clone())));
        assert!(rib.apply(b.route_peer(), &RibChange::Learned(b.clone())));
        assert_eq!(rib.best()[0].peer, b.peer, "shorter AS path wins");
        let c = imported([192, 0, 2, 3], Some(200), vec![65001, 65002, 65003]);
        assert!(rib.apply(c.route_peer(), &RibChange::Learned(c.clone())));
        assert_eq!(rib.best()[0].peer, c.peer, "higher local pref wins");
        assert!(rib.apply(c.peer, &RibChange::Withdrawn(c.key())));
        assert_eq!(rib.best()[0].peer, b.peer);
        assert!(rib.remove_peer(b.peer));
        assert_eq!(rib.best()[0].peer, a.peer);
        assert!(rib.apply(a.peer, &RibChange::Withdrawn(a.key())));
        assert!(rib.is_empty());
    }

    #[test]
    fn adj_rib_in_stale_marking_and_sweep() {
        let mut rib = AdjRibIn::default();
        let r = imported([192, 0, 2, 1], None, vec![65001]);
        assert!(rib.learn(r.key(), (*r).clone()).is_some());
        assert!(
            rib.learn(r.key(), (*r).clone()).is_none(),
            "duplicate is no change"
        );
        assert_eq!(rib.mark_stale().len(), 1);
        assert_eq!(rib.stale_count(), 1);
        assert!(rib.sweep_stale(Some(Family::Evpn)).is_empty());
        assert_eq!(rib.sweep_stale(Some(Family::Vpnv4)).len(), 1);
        assert!(rib.is_empty());
    }

    impl ImportedRoute {
        fn route_peer(&self) -> IpAddr {
            self.peer
        }
    }
}
