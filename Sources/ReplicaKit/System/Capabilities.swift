import CCap

/// The calling process's capability sets, read with libcap (`cap_get_proc(3)`); `getpcaps $$`.
public struct Capabilities: Sendable {
    /// A capability number from `linux/capability.h`.
    public struct Capability: RawRepresentable, Hashable, Sendable {
        /// The number (`CAP_SYS_ADMIN` is 21).
        public let rawValue: Int32
        /// The capability with this number.
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// `CAP_SYS_ADMIN`: mounts, namespaces, most of administration.
        public static let sysAdmin = Capability(rawValue: CAP_SYS_ADMIN)
        /// `CAP_NET_ADMIN`: links, addresses, routes.
        public static let netAdmin = Capability(rawValue: CAP_NET_ADMIN)
        /// `CAP_SYS_CHROOT`: `chroot`, and `setns` into a mount namespace.
        public static let sysChroot = Capability(rawValue: CAP_SYS_CHROOT)
    }

    /// The effective set.
    public let effective: Set<Capability>

    /// `cap_get_proc` + `cap_get_flag(CAP_EFFECTIVE)` for every capability the kernel knows.
    public static func current() throws(ReplicaError) -> Capabilities {
        guard let caps = cap_get_proc() else { throw ReplicaError.current("cap_get_proc") }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        var effective: Set<Capability> = []
        for number in 0...max(CAP_LAST_CAP, 40) {
            var value = CAP_CLEAR
            if cap_get_flag(caps, cap_value_t(number), CAP_EFFECTIVE, &value) == 0, value == CAP_SET {
                effective.insert(Capability(rawValue: Int32(number)))
            }
        }
        return Capabilities(effective: effective)
    }

    /// Whether the capability is in the effective set.
    public func has(_ capability: Capability) -> Bool { effective.contains(capability) }
}
