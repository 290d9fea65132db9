# rt-mailgate's RT-side extra "mailgate-thread" (opt-in): the tickets that hold the mail
# a reply answers, found by its Message-IDs, in ONE REST 2 request, so threading by
# Message-ID costs the gateway one request instead of three (RT 5's own REST 2 needs the
# attachment search, the hit's transaction, then the ticket). Read-only, GET only, and
# as the logged-in RT user: a ticket it may not see is left out, as RT's own search does.
#
# Install: copy this file to RT's local library, keeping the path below it
# (Debian: /usr/local/share/request-tracker5/lib/RT/REST2/Resource/MailgateThread.pm;
# RT from source: /opt/rt5/local/lib/RT/REST2/Resource/MailgateThread.pm), restart RT,
# and let the front door pass it (deploy/nginx/extras/rest2-thread.conf). RT's REST 2
# loads every module under RT::REST2::Resource, so no RT setting changes.
#
#   GET /REST/2.0/mailgate-thread?message_id=ID[&message_id=ID...]
#
# ID as RT stores a Message-ID (without the angle brackets); at most 5 are read, each at
# most 998 bytes. The answer: {"tickets": [T...], "more": 0|1}, each T as
# GET /REST/2.0/ticket/N?fields[Queue]=Name gives it: {"id", "Queue": {"id", "Name"},
# "Status", "Resolved"}, the ticket a merged one went into, each once, in RT's order of
# the attachments; "more": 1 when more than 10 tickets hold them (the gateway then
# threads nowhere).
package RT::REST2::Resource::MailgateThread;
use strict;
use warnings;

use Moose;
use namespace::autoclean;
use RT::REST2::Util qw(format_datetime);

extends 'RT::REST2::Resource';

# Kept small: a reply names a few mails, and a Message-ID on many tickets says nothing.
my $MAX_IDS     = 5;
my $MAX_TICKETS = 10;

sub dispatch_rules {
    Path::Dispatcher::Rule::Regex->new( regex => qr{^/mailgate-thread/?$} );
}

sub charsets_provided      { ['utf-8'] }
sub default_charset        { 'utf-8' }
sub allowed_methods        { ['GET'] }
sub content_types_provided { [ { 'application/json' => 'to_json' } ] }

sub to_json {
    my $self = shift;
    my @ids  = grep { defined && length && length($_) <= 998 }
        $self->request->query_parameters->get_all('message_id');
    splice @ids, $MAX_IDS if @ids > $MAX_IDS;

    my ( @tickets, %seen, $more );
    if (@ids) {
        my $user        = $self->current_user;
        my $attachments = RT::Attachments->new($user);
        $attachments->Limit(
            FIELD           => 'MessageId',
            OPERATOR        => '=',
            VALUE           => $_,
            CASESENSITIVE   => 1,
            ENTRYAGGREGATOR => 'OR',
        ) for @ids;
        $attachments->Limit( FIELD => 'Parent', VALUE => 0 );
        $attachments->OrderBy( FIELD => 'id', ORDER => 'ASC' );
        $attachments->RowsPerPage(100);
        while ( my $attachment = $attachments->Next ) {
            my $transaction = $attachment->TransactionObj;
            next unless $transaction && $transaction->Id && $transaction->ObjectType eq 'RT::Ticket';
            my $ticket = RT::Ticket->new($user);
            $ticket->Load( $transaction->ObjectId );    # follows a merge
            next unless $ticket->Id && $ticket->CurrentUserHasRight('ShowTicket');
            next if $seen{ $ticket->Id }++;
            if ( @tickets == $MAX_TICKETS ) { $more = 1; last }
            my $queue = $ticket->QueueObj;
            push @tickets, {
                id       => $ticket->Id,
                Queue    => { id => $ticket->Queue, Name => ( $queue->CurrentUserHasRight('SeeQueue') ? $queue->Name : '' ) },
                Status   => $ticket->Status,
                Resolved => format_datetime( $ticket->__Value('Resolved') ),
            };
        }
    }
    return JSON::to_json( { tickets => \@tickets, more => ( $more ? 1 : 0 ) }, { canonical => 1 } );
}

__PACKAGE__->meta->make_immutable;

1;
