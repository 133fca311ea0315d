#!/usr/bin/perl
# Test oracle: runs btrbk's own retention scheduler, from the installed btrbk package, on cases read
# from standard input, so ReplicaStore's engine is compared with the real thing, not a memory of it.
# Nothing of btrbk is copied here: its program text is loaded up to its MAIN: label (the subs and
# their file-scoped state), and schedule() is called as btrbk itself calls it.
#
# One case per line:  NOW|DOW|HOD|MIN|H,D,W,M,Y|T1,T2,...
#   NOW, T*  seconds since the epoch        DOW  sunday..saturday     HOD  0-23
#   MIN      "" | all | latest | no | N{h,d,w,m,y}
#   H..Y     "" (unset) | all | N
# Prints, per case, the kept times joined by commas. Run with TZ=UTC.
use strict;
use warnings;

my $path = $ENV{BTRBK} // '/usr/bin/btrbk';
open(my $file, '<', $path) or die "cannot read $path: $! (apt-get install btrbk)\n";
my $program = do { local $/; <$file> };
$program =~ s/^MAIN:.*//ms or die "$path has no MAIN: label; this oracle knows btrbk 0.32\n";
$program .= "\nsub oracle_set_now { \@tm_now = \@_; }\n1;\n";
eval "package main; no warnings; $program" or die "loading $path: $@\n";

while (my $line = <STDIN>) {
  chomp $line;
  my ($now, $dow, $hod, $min, $counts, $times) = split(/\|/, $line, -1);
  my %preserve = (dow => $dow, hod => $hod);
  if ($min =~ /^(\d+)([hdwmy])$/) { @preserve{qw(min_n min_q)} = ($1, $2); }
  elsif ($min ne '') { $preserve{min_q} = $min; }
  my @units = qw(h d w m y);
  my @values = split(/,/, $counts, -1);
  for my $i (0..4) { $preserve{$units[$i]} = $values[$i] if defined($values[$i]) && $values[$i] ne ''; }
  main::oracle_set_now(gmtime($now));
  my @schedule = map { { btrbk_date => [$_, 0, 1], value => $_ } } split(/,/, $times);
  my ($keep, undef) = main::schedule(schedule => \@schedule, preserve => \%preserve, preserve_date_in_future => 1);
  print join(',', sort { $a <=> $b } @$keep), "\n";
}
