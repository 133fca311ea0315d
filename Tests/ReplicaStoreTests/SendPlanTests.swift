import ReplicaStore
import Testing

/// What a send does, decided without a store or a target: the same decisions `replica-snap send`
/// acts on (ReplicationTests acts them out on two loop-mounted stores).
@Suite struct SendPlanTests {
    @Test func anEmptyTargetGetsTheOldestInFullThenEachFromTheOneBefore() {
        #expect(SendPlan(uuids: ["a", "b", "c"], held: []).steps == [.send(0, parent: nil), .send(1, parent: 0), .send(2, parent: 1)])
    }

    @Test func whatTheTargetHoldsIsNotSentAndIsTheNextOnesParent() {
        #expect(SendPlan(uuids: ["a", "b", "c"], held: ["a", "b"]).steps == [.alreadyThere(0), .alreadyThere(1), .send(2, parent: 1)])
        #expect(SendPlan(uuids: ["a", "b", "c"], held: ["a", "b", "c"]).steps.allSatisfy { if case .alreadyThere = $0 { true } else { false } })
    }

    /// A target that lost (or pruned) older copies gets them back; the newer ones it holds stay.
    @Test func anOlderCopyTheTargetLacksIsSentAgainInFull() {
        #expect(SendPlan(uuids: ["a", "b", "c"], held: ["c"]).steps == [.send(0, parent: nil), .send(1, parent: 0), .alreadyThere(2)])
    }

    @Test func copiesOfOtherSubvolumesDoNotCount() {
        #expect(SendPlan(uuids: ["a"], held: ["x", "y"]).steps == [.send(0, parent: nil)])
        #expect(SendPlan(uuids: [], held: ["x"]).steps.isEmpty)
    }
}
