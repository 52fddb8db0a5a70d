//! The transaction state machines (RFC 3261 §17, RFC 6026, RFC 4320): each input — a
//! response, an expired timer, a retransmitted request — changes a transaction's states and
//! timers and returns what the shard has to do about it. Nothing here builds or sends a
//! message.

use super::{Cancel, ClientState, Kind, ServerState, Timer, Txn};
use crate::proxy::Timers;
use crate::sip::Method;
use std::time::{Duration, Instant};

/// What a response from downstream asks of the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    /// Nothing to pass on (a response to a request siplb sent itself, or a late one).
    Absorb,
    /// A retransmission the transaction has already dealt with.
    AbsorbRetransmission,
    /// A provisional response to an INVITE: relay it when `relay` (101–199; a 100 is hop by
    /// hop), and send the CANCEL that waited for it when `send_cancel`.
    InviteProvisional { relay: bool, send_cancel: bool },
    /// A 2xx to an INVITE: relay it (kept for retransmissions); the dialog is answered.
    InviteAccepted,
    /// A non-2xx final to an INVITE: ACK it downstream, then relay it or try again elsewhere.
    InviteFinal,
    /// A retransmitted 2xx to an INVITE: relayed end to end.
    Relay2xxRetransmission,
    /// A retransmitted non-2xx final: send the ACK again.
    ResendAck,
    /// A provisional response to a non-INVITE: relay it when `relay` (101–199).
    NonInviteProvisional { relay: bool },
    /// A final response to a non-INVITE: relay it (kept for request retransmissions).
    NonInviteFinal,
}

/// Applies a response with status `code` to the client side of `t`.
pub fn on_response(t: &mut Txn, code: u16, now: Instant, timers: &Timers) -> ClientAction {
    if t.local_request {
        if code >= 200 && matches!(t.client, ClientState::Calling | ClientState::Proceeding) {
            t.client = ClientState::Completed;
            t.clear(Timer::E);
            t.clear(Timer::F);
            t.set(Timer::K, now + timers.t4);
        }
        return ClientAction::Absorb;
    }
    let pending = matches!(t.client, ClientState::Calling | ClientState::Proceeding);
    match (t.kind, t.client) {
        (Kind::Invite, _) if pending && code < 200 => {
            t.client = ClientState::Proceeding;
            t.clear(Timer::A);
            t.clear(Timer::B);
            // Timer C runs from the first provisional (Timer B covers the time before) and is
            // reset by each one from 101 to 199 (RFC 3261 §16.7 step 2).
            if code > 100 || !t.is_set(Timer::C) {
                t.set(Timer::C, now + timers.timer_c);
            }
            ClientAction::InviteProvisional {
                relay: code > 100,
                send_cancel: t.cancel == Cancel::Pending,
            }
        }
        (Kind::Invite, _) if pending && code < 300 => {
            t.client = ClientState::Accepted;
            t.server = ServerState::Accepted;
            for x in [Timer::A, Timer::B, Timer::C, Timer::CancelGuard] {
                t.clear(x);
            }
            t.set(Timer::L, now + timers.timer_b);
            t.set(Timer::M, now + timers.timer_b);
            ClientAction::InviteAccepted
        }
        (Kind::Invite, _) if pending => {
            t.client = ClientState::Completed;
            for x in [Timer::A, Timer::B, Timer::C, Timer::CancelGuard] {
                t.clear(x);
            }
            t.set(Timer::D, now + timers.timer_d);
            ClientAction::InviteFinal
        }
        (Kind::Invite, ClientState::Accepted) if (200..300).contains(&code) => {
            ClientAction::Relay2xxRetransmission
        }
        (Kind::Invite, ClientState::Completed) if code >= 300 => ClientAction::ResendAck,
        (Kind::NonInvite, _) if pending && code < 200 => {
            t.client = ClientState::Proceeding;
            if code > 100 {
                // Sent upstream: request retransmissions now get it again (§17.2.2).
                t.server = ServerState::Proceeding;
            }
            ClientAction::NonInviteProvisional { relay: code > 100 }
        }
        (Kind::NonInvite, _) if pending => {
            t.client = ClientState::Completed;
            t.clear(Timer::E);
            t.clear(Timer::F);
            t.set(Timer::K, now + timers.t4);
            t.server = ServerState::Completed;
            t.set(Timer::J, now + timers.timer_b);
            ClientAction::NonInviteFinal
        }
        _ => ClientAction::AbsorbRetransmission,
    }
}

/// The server side of an INVITE sends a final non-2xx response (relayed or siplb's own): it
/// is resent until the ACK (Timers G, H).
pub fn complete_server_invite(t: &mut Txn, now: Instant, timers: &Timers) {
    t.server = ServerState::Completed;
    t.server_interval = timers.t1;
    t.set(Timer::G, now + timers.t1);
    t.set(Timer::H, now + timers.timer_b);
}

/// The client side of `t` has nothing more to do (the caller has its answer and the
/// gateway's 2xx is being ended by siplb): no retransmission, no timer of its own.
pub fn abandon_client(t: &mut Txn) {
    t.client = ClientState::Terminated;
    for x in [Timer::A, Timer::B, Timer::C, Timer::D, Timer::CancelGuard] {
        t.clear(x);
    }
}

/// The client side of INVITE `t` starts over, toward another gateway (failover): Calling,
/// Timer A from T1 and Timer B at `timer_b`; the server side stays as it is.
pub fn restart_client_invite(t: &mut Txn, now: Instant, timers: &Timers, timer_b: Duration) {
    t.client = ClientState::Calling;
    for x in [Timer::C, Timer::D, Timer::CancelGuard] {
        t.clear(x);
    }
    t.client_interval = timers.t1;
    t.set(Timer::A, now + timers.t1);
    t.set(Timer::B, now + timer_b);
}

/// The client side of non-INVITE `t` starts over (an authenticated resend): Calling, Timers E
/// and F; the server side waits again for the final response it will relay.
pub fn restart_client_non_invite(t: &mut Txn, now: Instant, timers: &Timers) {
    t.client = ClientState::Calling;
    for x in [Timer::K, Timer::J] {
        t.clear(x);
    }
    if t.server == ServerState::Completed {
        t.server = ServerState::Trying;
    }
    t.client_interval = timers.t1;
    t.set(Timer::E, now + timers.t1);
    t.set(Timer::F, now + timers.timer_b);
}

/// What an expired timer asks of the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    None,
    /// Send the forwarded request downstream again (Timers A, E).
    RetransmitRequest,
    /// Send the last response upstream again (Timer G).
    RetransmitResponse,
    /// Timer B: the INVITE got no response at all; its final is siplb's 408.
    InviteTimeout,
    /// Timer C: no final response in time after a provisional; send CANCEL.
    SendCancel,
    /// The CANCEL got the INVITE no final response: siplb answers 487 itself.
    CancelUnanswered,
    /// Timer F: a non-INVITE got no final response (no 408 upstream, RFC 4320).
    NonInviteTimeout,
}

/// Runs `timer` of `t` if it is due at `now` (clearing it); what the shard must do.
pub fn on_timer(t: &mut Txn, timer: Timer, now: Instant, timers: &Timers) -> TimerAction {
    match t.timers[timer as usize] {
        Some(at) if at <= now => t.clear(timer),
        _ => return TimerAction::None,
    }
    match timer {
        // Retransmit the request: INVITE every doubled interval (A), non-INVITE doubling up
        // to T2 and at T2 once a provisional arrived (E).
        Timer::A if t.client == ClientState::Calling => {
            t.client_interval *= 2;
            t.set(Timer::A, now + t.client_interval);
            TimerAction::RetransmitRequest
        }
        Timer::E if matches!(t.client, ClientState::Calling | ClientState::Proceeding) => {
            t.client_interval = match t.client {
                ClientState::Calling => (t.client_interval * 2).min(timers.t2),
                _ => timers.t2,
            };
            t.set(Timer::E, now + t.client_interval);
            TimerAction::RetransmitRequest
        }
        Timer::B if t.client == ClientState::Calling => {
            t.client = ClientState::Terminated;
            t.clear(Timer::A);
            TimerAction::InviteTimeout
        }
        Timer::C if t.client == ClientState::Proceeding && t.cancel != Cancel::Sent => {
            TimerAction::SendCancel
        }
        Timer::CancelGuard if t.client == ClientState::Proceeding => {
            t.client = ClientState::Terminated;
            t.clear(Timer::C);
            TimerAction::CancelUnanswered
        }
        Timer::F if matches!(t.client, ClientState::Calling | ClientState::Proceeding) => {
            t.client = ClientState::Terminated;
            t.clear(Timer::E);
            if t.server != ServerState::Completed {
                t.server = ServerState::Terminated;
            }
            TimerAction::NonInviteTimeout
        }
        Timer::D | Timer::K | Timer::M => {
            t.client = ClientState::Terminated;
            TimerAction::None
        }
        Timer::G if t.server == ServerState::Completed => {
            t.server_interval = (t.server_interval * 2).min(timers.t2);
            t.set(Timer::G, now + t.server_interval);
            TimerAction::RetransmitResponse
        }
        Timer::H => {
            t.server = ServerState::Terminated;
            t.clear(Timer::G);
            TimerAction::None
        }
        Timer::I | Timer::J | Timer::L => {
            t.server = ServerState::Terminated;
            TimerAction::None
        }
        _ => TimerAction::None,
    }
}

/// What a request that matched an existing server transaction asks of the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// A retransmission with nothing to answer (or an ACK that needs nothing more).
    Absorb,
    /// Send the last response upstream again.
    ResendResponse,
    /// The ACK of a 2xx that reused the INVITE's branch: an in-dialog request, end to end.
    AckOf2xx,
}

/// Applies a request with `method` that matched the server side of `t`.
pub fn on_request(t: &mut Txn, method: Method, now: Instant, timers: &Timers) -> ServerAction {
    match (t.kind, t.server, method) {
        (Kind::Invite, ServerState::Completed, Method::Ack) => {
            t.server = ServerState::Confirmed;
            t.clear(Timer::G);
            t.clear(Timer::H);
            t.set(Timer::I, now + timers.t4);
            ServerAction::Absorb
        }
        (Kind::Invite, ServerState::Accepted, Method::Ack) => ServerAction::AckOf2xx,
        (_, _, Method::Ack)
        | (_, ServerState::Trying | ServerState::Confirmed, _)
        | (Kind::Invite, ServerState::Accepted, _) => ServerAction::Absorb,
        (_, ServerState::Proceeding | ServerState::Completed, _) if !t.last_response.is_empty() => {
            ServerAction::ResendResponse
        }
        _ => ServerAction::Absorb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::target::Target;
    use std::time::Duration;

    fn invite(now: Instant, timers: &Timers) -> Txn {
        let peer = Target::udp("127.0.0.1:5081".parse().unwrap());
        let mut t = Txn::new(Kind::Invite, Method::Invite, peer, peer, timers.t1);
        t.client = ClientState::Calling;
        t.server = ServerState::Proceeding;
        t.set(Timer::A, now + timers.t1);
        t.set(Timer::B, now + timers.timer_b);
        t
    }

    fn bye(now: Instant, timers: &Timers) -> Txn {
        let peer = Target::udp("127.0.0.1:5081".parse().unwrap());
        let mut t = Txn::new(Kind::NonInvite, Method::Bye, peer, peer, timers.t1);
        t.client = ClientState::Calling;
        t.set(Timer::E, now + timers.t1);
        t.set(Timer::F, now + timers.timer_b);
        t
    }

    /// Runs every due timer of `t` at `now`, in table order.
    fn fire(t: &mut Txn, now: Instant, timers: &Timers) -> Vec<TimerAction> {
        Timer::ALL
            .iter()
            .map(|&x| on_timer(t, x, now, timers))
            .filter(|a| *a != TimerAction::None)
            .collect()
    }

    #[test]
    fn timer_a_doubles_and_timer_b_ends_the_invite_at_64_t1() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        let mut at = t0;
        let mut retransmits = 0;
        while let Some(next) = t.next_deadline() {
            at = next;
            for a in fire(&mut t, at, &timers) {
                match a {
                    TimerAction::RetransmitRequest => retransmits += 1,
                    TimerAction::InviteTimeout => {
                        assert_eq!(at - t0, timers.timer_b);
                        assert_eq!(retransmits, 6, "A at 1, 2, 4, 8, 16, 32 T1 before 64 T1");
                        return;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        panic!("Timer B never fired (last at {:?})", at - t0);
    }

    #[test]
    fn timer_e_caps_at_t2_and_stays_there_once_proceeding() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = bye(t0, &timers);
        let mut intervals = Vec::new();
        let mut at = t0;
        for _ in 0..5 {
            at = t.timers[Timer::E as usize].unwrap();
            fire(&mut t, at, &timers);
            intervals.push(t.client_interval);
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            intervals,
            [ms(1000), ms(2000), ms(4000), ms(4000), ms(4000)]
        );
        on_response(&mut t, 180, at, &timers);
        at = t.timers[Timer::E as usize].unwrap();
        fire(&mut t, at, &timers);
        assert_eq!(t.client_interval, timers.t2);
    }

    #[test]
    fn a_provisional_stops_timer_b_and_starts_timer_c() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        let a = on_response(&mut t, 180, t0, &timers);
        assert_eq!(
            a,
            ClientAction::InviteProvisional {
                relay: true,
                send_cancel: false
            }
        );
        assert!(!t.is_set(Timer::B) && !t.is_set(Timer::A));
        assert_eq!(t.timers[Timer::C as usize], Some(t0 + timers.timer_c));
    }

    #[test]
    fn a_100_is_not_relayed_and_does_not_push_timer_c_back() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        on_response(&mut t, 100, t0, &timers);
        let later = t0 + Duration::from_secs(1);
        let a = on_response(&mut t, 100, later, &timers);
        assert_eq!(
            a,
            ClientAction::InviteProvisional {
                relay: false,
                send_cancel: false
            }
        );
        assert_eq!(t.timers[Timer::C as usize], Some(t0 + timers.timer_c));
    }

    #[test]
    fn a_pending_cancel_goes_out_with_the_first_provisional() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        t.cancel = Cancel::Pending;
        let a = on_response(&mut t, 100, t0, &timers);
        assert_eq!(
            a,
            ClientAction::InviteProvisional {
                relay: false,
                send_cancel: true
            }
        );
    }

    #[test]
    fn non_2xx_final_completes_and_its_retransmission_resends_the_ack() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        assert_eq!(
            on_response(&mut t, 486, t0, &timers),
            ClientAction::InviteFinal
        );
        assert_eq!(t.client, ClientState::Completed);
        assert!(t.is_set(Timer::D));
        assert_eq!(
            on_response(&mut t, 486, t0, &timers),
            ClientAction::ResendAck
        );
    }

    #[test]
    fn a_2xx_is_accepted_and_its_retransmissions_relayed() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        assert_eq!(
            on_response(&mut t, 200, t0, &timers),
            ClientAction::InviteAccepted
        );
        assert_eq!(
            (t.client, t.server),
            (ClientState::Accepted, ServerState::Accepted)
        );
        assert_eq!(
            on_response(&mut t, 200, t0, &timers),
            ClientAction::Relay2xxRetransmission
        );
        assert_eq!(
            on_response(&mut t, 486, t0, &timers),
            ClientAction::AbsorbRetransmission
        );
    }

    #[test]
    fn ack_of_a_non_2xx_final_confirms_and_stops_timer_g() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        on_response(&mut t, 486, t0, &timers);
        complete_server_invite(&mut t, t0, &timers);
        t.last_response = b"SIP/2.0 486 Busy\r\n\r\n".to_vec();
        assert_eq!(
            on_request(&mut t, Method::Invite, t0, &timers),
            ServerAction::ResendResponse
        );
        assert_eq!(
            on_request(&mut t, Method::Ack, t0, &timers),
            ServerAction::Absorb
        );
        assert_eq!(t.server, ServerState::Confirmed);
        assert!(!t.is_set(Timer::G) && t.is_set(Timer::I));
    }

    #[test]
    fn ack_reusing_the_invite_branch_after_a_2xx_goes_end_to_end() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = invite(t0, &timers);
        on_response(&mut t, 200, t0, &timers);
        assert_eq!(
            on_request(&mut t, Method::Ack, t0, &timers),
            ServerAction::AckOf2xx
        );
    }

    #[test]
    fn timer_f_ends_a_non_invite_without_a_reply_upstream() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let mut t = bye(t0, &timers);
        let actions = fire(&mut t, t0 + timers.timer_b, &timers);
        assert!(
            actions.contains(&TimerAction::NonInviteTimeout),
            "{actions:?}"
        );
        assert!(t.done());
    }

    #[test]
    fn local_requests_absorb_their_responses() {
        let (timers, t0) = (Timers::default(), Instant::now());
        let peer = Target::udp("127.0.0.1:5081".parse().unwrap());
        let mut t = Txn::local_request(Method::Cancel, peer, t0, &timers);
        assert_eq!(on_response(&mut t, 200, t0, &timers), ClientAction::Absorb);
        assert_eq!(t.client, ClientState::Completed);
        assert!(t.is_set(Timer::K) && !t.is_set(Timer::F));
    }
}
