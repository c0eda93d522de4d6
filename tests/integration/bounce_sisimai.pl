#!/usr/bin/perl
# bounce_sisimai.pl - what Sisimai (Debian's libsisimai-perl 4.25) makes of the
# bounce fixtures, to cross-check sendguard's own bounce parser against.
#
# Usage: perl tests/integration/bounce_sisimai.pl tests/fixtures/bounces/*.eml
#
# For each FILE it prints one tab-separated line per recipient Sisimai finds:
#
#   FILE  ADDRESS  REASON  CLASS  STATUS
#
# REASON is Sisimai's reason, CLASS sendguard's class for it (hard, soft,
# block, arf, autoreply, delivered, or "unknown" for a reason not mapped
# below), STATUS the delivery status (e.g. 5.1.1) or "-".  A file in which
# Sisimai finds nothing prints "FILE - - none -"; one it cannot read or parse
# without dying prints "FILE - error error -".
#
# Placeholders {{TOKEN ...}} are replaced with a fixed dummy token (120 'A's,
# valid base64url) before Sisimai sees the text; the file itself is untouched.
# The message is handed over in memory (Sisimai::Mail::Memory), not as a file:
# Sisimai's mbox reader needs no "From " line, but it starts a new message at
# every line beginning with "From " and skips files perl's -T calls binary.
use strict;
use warnings;
use Sisimai;

my %class;
$class{$_} = 'hard' for qw(userunknown hostunknown hasmoved notaccept);
$class{$_} = 'soft' for qw(mailboxfull exceedlimit systemfull expired
    networkerror systemerror mailererror toomanyconn mesgtoobig suspend
    undefined onhold);
$class{$_} = 'block' for qw(blocked rejected policyviolation securityerror
    spamdetected virusdetected norelaying filtered contenterror syntaxerror
    speeding);
$class{feedback}  = 'arf';
$class{vacation}  = 'autoreply';
$class{delivered} = 'delivered';

my $dummy = 'A' x 120;

sub row { print join("\t", @_), "\n" }

sub sisimai_rows {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or die "cannot open $file: $!\n";
    my $text = do { local $/; <$fh> };
    close($fh);
    die "empty file\n" unless defined $text && length $text;
    $text =~ s/\{\{TOKEN [^}]*\}\}/$dummy/g;

    # Sisimai 4.25's make() knows "delivered" only; "vacation" is accepted and
    # ignored (auto-replies are always reported, reason "vacation").
    my $list = Sisimai->make(\$text, delivered => 1, vacation => 1) || [];
    my @rows;
    for my $r (@$list) {
        my $address = $r->recipient ? $r->recipient->address : '';
        my $reason  = $r->reason || '';
        push @rows, [
            length $address ? $address : '-',
            length $reason ? $reason : '-',
            $class{$reason} // 'unknown',
            $r->deliverystatus || '-',
        ];
    }
    return @rows;
}

for my $file (@ARGV) {
    my @rows;
    my $ok = eval {
        local $SIG{__WARN__} = sub { print STDERR "$file: $_[0]" };
        @rows = sisimai_rows($file);
        1;
    };
    if (!$ok) {
        (my $why = $@ // 'unknown error') =~ s/\s+\z//;
        print STDERR "$file: $why\n";
        row($file, '-', 'error', 'error', '-');
    } elsif (!@rows) {
        row($file, '-', '-', 'none', '-');
    } else {
        row($file, @$_) for @rows;
    }
}
exit 0;
