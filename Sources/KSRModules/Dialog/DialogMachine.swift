/// Kamailio's dialog states (dlg_hash.h): the numbers `$dlg(state)`, `dlg.list` and the database show.
public enum DialogState: Int, Sendable, CaseIterable {
    /// The initial INVITE was seen; no reply yet.
    case unconfirmed = 1
    /// A provisional reply (101-199) went upstream.
    case early = 2
    /// A 2xx went upstream, its ACK was not seen yet.
    case confirmedNA = 3
    /// The ACK of the 2xx was seen.
    case confirmed = 4
    /// Ended: a BYE, a negative final reply, a timeout or a termination.
    case deleted = 5

    /// Kamailio's name in logs and docs.
    public var name: String {
        switch self {
        case .unconfirmed: return "unconfirmed"
        case .early: return "early"
        case .confirmedNA: return "confirmed_na"
        case .confirmed: return "confirmed"
        case .deleted: return "deleted"
        }
    }

    /// Confirmed with or without the ACK.
    public var isConfirmed: Bool { self == .confirmedNA || self == .confirmed }
}

/// What drives a dialog (Kamailio's `DLG_EVENT_*`).
public enum DialogEvent: Sendable, Equatable {
    /// A provisional reply (101-199) left upstream (`DLG_EVENT_RPL1xx`).
    case provisional
    /// A negative final reply left upstream (`DLG_EVENT_RPL3xx`).
    case negative
    /// A 2xx left upstream (`DLG_EVENT_RPL2xx`).
    case accepted
    /// The ACK of the 2xx (`DLG_EVENT_REQACK`).
    case ack
    /// A BYE from either side (`DLG_EVENT_REQBYE`); also a timeout or a termination (BYEs sent by us).
    case bye
    /// Another in-dialog request (`DLG_EVENT_REQ`).
    case request
    /// The INVITE transaction ended without a final reply (`DLG_EVENT_TDEL`).
    case transactionGone
}

/// The state machine of one dialog, as Kamailio's `next_state_dlg` (dlg_hash.c): a value with its
/// timestamps (seconds since 1970, given by the caller so traces run on a mock clock).
public struct DialogMachine: Sendable, Equatable {
    public private(set) var state: DialogState = .unconfirmed
    /// When the INVITE was seen (`init_ts`).
    public private(set) var initTS: Int
    /// When the 2xx went upstream (`start_ts`, 0 before).
    public private(set) var startTS: Int = 0
    /// When a confirmed dialog ended (`end_ts`, 0 before).
    public private(set) var endTS: Int = 0
    /// A BYE was seen (`DLG_FLAG_HASBYE`): a late 2xx no longer revives the dialog.
    public private(set) var hasBye = false

    public init(now: Int) { initTS = now }

    /// A confirmed dialog read back from the database.
    public init(restoring state: DialogState, startTS: Int) {
        self.state = state
        initTS = startTS
        self.startTS = startTS
    }

    /// The result of one event: the state before and after.
    public struct Transition: Sendable, Equatable {
        public var old: DialogState
        public var new: DialogState
        public var changed: Bool { old != new }
        /// The dialog became confirmed now (`dialog:start`).
        public var started: Bool { changed && new == .confirmedNA }
        /// A confirmed dialog ended now (`dialog:end`: BYE, timeout, termination).
        public var ended: Bool { changed && new == .deleted && old.isConfirmed }
        /// A dialog that never got confirmed ended now (`dialog:failed`).
        public var failed: Bool { changed && new == .deleted && !old.isConfirmed }
    }

    /// Applies an event at time `now` (Kamailio's transitions; events that do not apply leave the state).
    @discardableResult
    public mutating func handle(_ event: DialogEvent, now: Int) -> Transition {
        let old = state
        switch (event, state) {
        case (.transactionGone, .unconfirmed), (.transactionGone, .early):
            state = .deleted
        case (.provisional, .unconfirmed), (.provisional, .early):
            state = .early
        case (.negative, .unconfirmed), (.negative, .early):
            state = .deleted
        case (.accepted, .unconfirmed), (.accepted, .early):
            state = .confirmedNA
            startTS = now
        case (.accepted, .deleted) where !hasBye && endTS == 0:
            // A 2xx after a negative reply of another branch: the dialog comes back (Kamailio's re-ref).
            state = .confirmedNA
            startTS = now
        case (.ack, .confirmedNA):
            state = .confirmed
        case (.bye, .confirmedNA), (.bye, .confirmed):
            hasBye = true
            state = .deleted
            endTS = now
        default:
            break
        }
        return Transition(old: old, new: state)
    }
}
