import ReplicaKit

extension NetworkPlan {
    /// The plan a service profile describes:
    ///
    /// ```ini
    /// [Network]
    /// # default: the unit name without .service
    /// Namespace=web
    /// # the host end joins it (made, with the gateway address, when missing)
    /// Bridge=br-replica
    /// # or instead: a macvlan on this interface, born in the namespace
    /// Macvlan=eth0
    /// # private, vepa, bridge (default), passthru, source
    /// MacvlanMode=bridge
    /// # addresses are leased from it unless Address= is given
    /// Subnet=10.88.0.0/24
    /// # optional
    /// Address=10.88.0.5/24
    /// # default: the subnet's first host; the default route goes via it
    /// Gateway=10.88.0.1
    /// # with Bridge=: an IPv6 address too, in the bridge's unique local /64 (UniqueLocal)
    /// IPv6=yes
    /// # its last 64 bits (default: derived from the unit's name)
    /// IPv6Token=::1a:2b:3c:4d
    /// # optional
    /// MTU=1500
    /// ```
    ///
    /// `lease` is asked for an address when the profile has none (`AddressPool.lease`). Nil when
    /// the profile has no `[Network]` section.
    public init?(profile: Profile, lease: (IPPrefix) throws(ReplicaError) -> IPPrefix) throws(ProfileError) {
        let section = "Network"
        guard profile.settings.contains(where: { $0.section == section }) else { return nil }
        // Settings from files passed the registry when parsed; those from flags are checked the same way.
        for setting in profile.settings where setting.section == section { try ProfileKeys.validate(setting) }
        func parsed<T>(_ key: String, _ parse: (String) throws(ReplicaError) -> T) throws(ProfileError) -> T? {
            guard let setting = profile.value(section, key) else { return nil }
            do throws(ReplicaError) { return try parse(setting.value) } catch { throw ProfileError(setting, error.hint ?? "\(error)") }
        }
        _ = try parsed("Namespace") { (text) throws(ReplicaError) in _ = try NamespaceName(text) }
        let hostLink = try parsed("HostLink") { (text) throws(ReplicaError) -> String in _ = try LinkName(text); return text }
        self.init(namespace: profile.networkNamespace ?? profile.serviceName, hostLink: hostLink)
        bridge = try parsed("Bridge") { (text) throws(ReplicaError) -> String in _ = try LinkName(text); return text }
        macvlanParent = try parsed("Macvlan") { (text) throws(ReplicaError) -> String in _ = try LinkName(text); return text }
        if let mode = try parsed("MacvlanMode", { (text) throws(ReplicaError) -> RouteRequest.MacvlanMode in
            guard let mode = RouteRequest.MacvlanMode.allCases.first(where: { "\($0)" == text }) else {
                throw ReplicaError("MacvlanMode", [text], errno: .EINVAL,
                               hint: "one of \(RouteRequest.MacvlanMode.allCases.map { "\($0)" }.joined(separator: ", "))")
            }
            return mode
        }) { macvlanMode = mode }
        let subnet = try parsed("Subnet") { (text) throws(ReplicaError) in try IPPrefix(text) }
        var address = try parsed("Address") { (text) throws(ReplicaError) in try IPPrefix(text) }
        if address == nil, let subnet, let setting = profile.value(section, "Subnet") {
            do throws(ReplicaError) { address = try lease(subnet) } catch { throw ProfileError(setting, error.hint ?? "\(error)") }
        }
        let gateway = try parsed("Gateway") { (text) throws(ReplicaError) in try IPPrefix(text) }
            ?? subnet.flatMap { try? AddressPool(subnet: $0).gateway }
        if let address { addresses = [address] }
        if let gateway {
            let width = gateway.family == address?.family ?? gateway.family ? gateway.address.count : 4
            routes = [RouteSpec(IPPrefix(address: [UInt8](repeating: 0, count: width), length: 0),
                                via: IPPrefix(address: gateway.address, length: width * 8))]
            if bridge != nil, let length = subnet?.length ?? address?.length {
                bridgeAddress = IPPrefix(address: gateway.address, length: length)
            }
        }
        let ipv6 = try profile.value(section, "IPv6")?.boolean()
        if let setting = profile.value(section, "IPv6Token"), ipv6 != true {
            throw ProfileError(setting, "IPv6Token= is the last 64 bits of the address IPv6=yes gives; add IPv6=yes")
        }
        if ipv6 == true {
            guard let bridge else { throw ProfileError(profile.value(section, "IPv6")!, "IPv6=yes needs Bridge=: the address is in the bridge's prefix") }
            let token = try parsed("IPv6Token") { (text) throws(ReplicaError) in try UniqueLocal.interfaceID(parsing: text) }
                ?? UniqueLocal.interfaceID(profile.unit)
            let prefix = UniqueLocal.prefix(bridge: bridge)
            let gateway = UniqueLocal.gateway(prefix)
            addresses.append(UniqueLocal.address(prefix, interface: token))
            routes.append(RouteSpec(IPPrefix(address: [UInt8](repeating: 0, count: 16), length: 0), via: IPPrefix(address: gateway.address, length: 128)))
            bridgeAddress6 = gateway
        }
        mtu = try parsed("MTU") { (text) throws(ReplicaError) -> UInt32 in
            guard let value = UInt32(text), (68...65535).contains(value) else {
                throw ReplicaError("MTU", [text], errno: .EINVAL, hint: "an MTU is 68 to 65535")
            }
            return value
        }
        do throws(ReplicaError) { try validate() } catch {
            let setting = profile.settings.last { $0.section == section }!
            throw ProfileError(setting, error.hint ?? "\(error)")
        }
    }
}
