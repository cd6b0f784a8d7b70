//! When a recomputed status is worth an apiserver write.
//!
//! The Workspace controller and the NodeClaim provisioner recompute a status on every pass. Between two real
//! changes an object passes through waiting states (a node booting, a pod starting) whose only difference is
//! which step a not-True condition waits for; with hundreds of objects coming up at once, writing each of those
//! makes the apiserver the bottleneck. Both skip them by the same rule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Whether `after` differs from `before` in more than waiting.
///
/// A condition whose status, observed generation and transition time stay the same, and whose old and new
/// versions both count as `waiting`, may change its reason and message without it counting. Anything else
/// counts: another status, another set of conditions, a reason or message that is not waiting on either side.
pub fn conditions_changed(before: &[Condition], after: &[Condition], waiting: impl Fn(&Condition) -> bool) -> bool {
    before.len() != after.len()
        || after.iter().any(|c| {
            let Some(old) = before.iter().find(|o| o.type_ == c.type_) else { return true };
            old.status != c.status
                || old.observed_generation != c.observed_generation
                || old.last_transition_time != c.last_transition_time
                || (old.reason != c.reason || old.message != c.message) && !(waiting(old) && waiting(c))
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_}: {reason}"),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn only_moves_between_waiting_reasons_do_not_count() {
        let waiting = |c: &Condition| c.reason.ends_with("Pending");
        let before = [cond("Ready", "False", "NodePending"), cond("Other", "True", "Done")];
        assert!(!conditions_changed(&before, &before, waiting));
        let moved = [cond("Ready", "False", "PodPending"), cond("Other", "True", "Done")];
        assert!(!conditions_changed(&before, &moved, waiting), "waiting -> waiting");
        let problem = [cond("Ready", "False", "ImagePullBackOff"), cond("Other", "True", "Done")];
        assert!(conditions_changed(&before, &problem, waiting), "waiting -> a problem");
        assert!(conditions_changed(&problem, &moved, waiting), "a problem -> waiting");
        let ready = [cond("Ready", "True", "NodePending"), cond("Other", "True", "Done")];
        assert!(conditions_changed(&before, &ready, waiting), "status changed");
        assert!(conditions_changed(&before, &before[..1], waiting), "a condition fewer");
        let renamed = [cond("Ready", "False", "NodePending"), cond("Another", "True", "Done")];
        assert!(conditions_changed(&before, &renamed, waiting), "another condition type");
        let mut newer = before.clone();
        newer[0].observed_generation = Some(2);
        assert!(conditions_changed(&before, &newer, waiting), "another generation");
    }
}
