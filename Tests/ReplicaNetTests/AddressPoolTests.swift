import Dispatch
import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

@Suite struct AddressPoolTests {
    @Test func leasesAreStablePerOwnerAndReleased() throws {
        try withTemporaryDirectory { dir in
            let pool = try AddressPool(subnet: try IPPrefix("10.88.0.0/24"), root: dir)
            #expect(pool.gateway.description == "10.88.0.1/24")
            let web = try pool.lease(for: "web.service")
            #expect(web.description == "10.88.0.2/24")
            #expect(try pool.lease(for: "web.service") == web, "a second up gets the same address")
            #expect(try pool.lease(for: "db.service").description == "10.88.0.3/24")
            #expect(try pool.lease(for: "cache", dryRun: true).description == "10.88.0.4/24")
            try pool.release("web.service")
            #expect(try pool.lease(for: "cache").description == "10.88.0.2/24", "a released address is handed out again")
            #expect(try pool.leases().map(\.owner) == ["cache", "db.service"])
        }
    }

    /// A stray folder (or FIFO) named as an address is no lease, but its address is not handed out:
    /// it once was, and every new lease in the subnet failed on it.
    @Test func aStrayEntryNamedAsAnAddressBlocksOnlyThatAddress() throws {
        try withTemporaryDirectory { dir in
            let pool = try AddressPool(subnet: try IPPrefix("10.88.0.0/24"), root: dir)
            #expect(try pool.lease(for: "control").description == "10.88.0.2/24", "the positive control")
            try createDirectories("\(pool.directory)/10.88.0.3")
            #expect(mkfifo("\(pool.directory)/10.88.0.4", 0o644) == 0)
            #expect(try pool.lease(for: "web.service").description == "10.88.0.5/24")
            #expect(try pool.leases().map(\.owner) == ["control", "web.service"])
            #expect(try pool.lease(for: "db.service").description == "10.88.0.6/24")
        }
    }

    @Test func aFullSubnetIsRefusedWithTheFix() throws {
        try withTemporaryDirectory { dir in
            let pool = try AddressPool(subnet: try IPPrefix("10.88.0.0/30"), root: dir)
            _ = try pool.lease(for: "a")  // .2 only: .1 is the gateway, .3 broadcast
            let error = #expect(throws: ReplicaError.self) { try pool.lease(for: "b") }
            #expect(error?.errno == .EADDRNOTAVAIL && error?.hint?.contains("release some") == true)
        }
    }

    /// 8 threads lease 20 addresses each at once (flock locks are per open file, so threads
    /// exclude each other as processes do): 160 distinct addresses, one file each.
    @Test func concurrentLeasesNeverCollide() throws {
        try withTemporaryDirectory { dir in
            let subnet = try IPPrefix("10.90.0.0/24")
            DispatchQueue.concurrentPerform(iterations: 8) { worker in
                guard let pool = try? AddressPool(subnet: subnet, root: dir) else { return }
                for n in 0..<20 { _ = try? pool.lease(for: "w\(worker)-\(n)") }
            }
            let all = try AddressPool(subnet: subnet, root: dir).leases()
            #expect(all.count == 160 && Set(all.map(\.address)).count == 160)
        }
    }
}
