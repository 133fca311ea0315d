import Glibc
import ReplicaKit
import Synchronization

/// Small network peers for the tests, run with the host's `python3` inside a network namespace
/// (`ip netns exec`): nothing needs to be installed in the namespace, and each speaks the protocol
/// itself, so a test sees what a machine's own process would.
public enum NetworkProbe {
    /// `python3` in a namespace: a server answering each TCP connection or UDP datagram with a
    /// word and the peer's address, in the background until `stopAll(in:)` ends it (deleting the
    /// namespace's name does not: the server would keep the namespace, and what is in it, alive);
    /// IPv4, or IPv6 only.
    public static func serve(_ namespace: String, _ transport: String, port: Int, word: String, ipv6: Bool = false) throws {
        let family = ipv6 ? "socket.AF_INET6" : "socket.AF_INET", any = ipv6 ? "::" : "0.0.0.0"
        let only = ipv6 ? "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1);" : ""
        let script = transport == "tcp"
            ? "import socket\ns=socket.socket(\(family));\(only)s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('\(any)',\(port)));s.listen()\n"
              + "while True:\n c,a=s.accept();c.sendall(b'\(word) '+a[0].encode());c.close()"
            : "import socket\ns=socket.socket(\(family),socket.SOCK_DGRAM);\(only)s.bind(('\(any)',\(port)))\n"
              + "while True:\n d,a=s.recvfrom(100);s.sendto(b'\(word) '+a[0].encode(),a)"
        // `ip netns exec` becomes python3: the pid is the server's.
        let pid = try Command.spawn(["ip", "netns", "exec", namespace, "python3", "-c", script], output: nil, newSession: true)
        servers.withLock { $0[namespace, default: []].append(pid) }
        usleep(300_000)
    }

    /// The servers `serve` started, by namespace.
    private static let servers = Mutex<[String: [Int32]]>([:])

    /// Ends the servers `serve` started in `namespace` (SIGKILL, reaped), and nothing else there.
    public static func stopAll(in namespace: String) {
        for pid in servers.withLock({ $0.removeValue(forKey: namespace) ?? [] }) {
            kill(pid, SIGKILL)
            _ = try? ExitStatus.wait(for: pid)
        }
    }

    /// What a client in `namespace` gets from ADDRESS:PORT: the word and the address it was seen
    /// from, or "unreachable" within a second.
    public static func ask(_ namespace: String, _ transport: String, _ address: String, _ port: Int) throws -> String {
        let script = transport == "tcp"
            ? "import socket\ntry:\n s=socket.create_connection(('\(address)',\(port)),timeout=1);print(s.recv(100).decode())\nexcept Exception: print('unreachable')"
            : "import socket\ns=socket.socket(socket.AF_INET\(address.contains(":") ? "6" : ""),socket.SOCK_DGRAM);s.settimeout(1)\ntry:\n s.sendto(b'x',('\(address)',\(port)));print(s.recv(100).decode())\nexcept Exception: print('unreachable')"
        var answer = try Command.check(["ip", "netns", "exec", namespace, "python3", "-c", script])
        while answer.hasSuffix("\n") { answer.removeLast() }
        return answer
    }

    /// A DNS query from `namespace` to SERVER (IPv4 or IPv6): the answer's addresses or names,
    /// "NXDOMAIN", or "no answer" within a second (a client of a few lines, so nothing but python3
    /// is needed). A PTR query with `reverse`, AAAA with `ipv6`, else A.
    public static func lookup(_ namespace: String, _ server: String, _ name: String, reverse: Bool = false, ipv6: Bool = false) throws -> String {
        let script = """
            import socket,struct,random
            q='\(name)';t=\(reverse ? 12 : ipv6 ? 28 : 1)
            i=random.randint(0,65535);p=struct.pack('>HHHHHH',i,0x100,1,0,0,0)+b''.join(bytes([len(l)])+l.encode() for l in q.split('.'))+bytes([0])+struct.pack('>HH',t,1)
            s=socket.socket(socket.AF_INET\(server.contains(":") ? "6" : ""),socket.SOCK_DGRAM);s.settimeout(1)
            try:
             s.sendto(p,('\(server)',53));r=s.recv(4096)
            except Exception: print('no answer');raise SystemExit
            if r[3]&15==3: print('NXDOMAIN');raise SystemExit
            n=struct.unpack('>H',r[6:8])[0];o=len(p);out=[]
            def name(o):
             l=[]
             while True:
              c=r[o]
              if c>=192: return '.'.join(l+[name(((c&63)<<8)|r[o+1])[0]]),o+2
              if c==0: return '.'.join(l),o+1
              l.append(r[o+1:o+1+c].decode());o+=1+c
            for _ in range(n):
             _,o=name(o);ty,_,_,ln=struct.unpack('>HHIH',r[o:o+10]);o+=10
             if ty==1: out.append(socket.inet_ntoa(r[o:o+4]))
             if ty==28: out.append(socket.inet_ntop(socket.AF_INET6,r[o:o+16]))
             if ty==12: out.append(name(o)[0])
             o+=ln
            print(' '.join(out) if out else 'no records')
            """
        var answer = try Command.check(["ip", "netns", "exec", namespace, "python3", "-c", script])
        while answer.hasSuffix("\n") { answer.removeLast() }
        return answer
    }

    /// `lookup` asked again until its answer satisfies `done` or a second has passed: dnsmasq
    /// rereads its hosts file when it handles the SIGHUP, a moment after the signal. The last answer.
    public static func lookup(_ namespace: String, _ server: String, _ name: String, until done: (String) -> Bool) throws -> String {
        let deadline = ContinuousClock.now + .seconds(1)
        var answer = try lookup(namespace, server, name)
        while !done(answer) && ContinuousClock.now < deadline {
            usleep(20_000)
            answer = try lookup(namespace, server, name)
        }
        return answer
    }
}
